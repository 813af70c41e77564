"""The `quotalang` console script: the core verbs plus `serve` and `manifests`.

The core CLI (`quotalang.cli`) knows nothing of the server (imports point one
way); this module hands it `add_server_verbs` as an extension of its parser
and runs through the core's `main`, so every verb shares one error handling:
no tracebacks, exit 0 ok / 1 findings / 2 usage or input errors. uvicorn,
starlette, kubernetes and cryptography are imported only when `serve` or
`manifests` runs, so the core verbs work (and stay fast) in an install
without the `[server]` extra.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

import orjson
import yaml

from quotalang import cli as core
from quotalang.server import serveopts
from quotalang.server.serveopts import positive_int


def _server_extra(verb: Callable[[argparse.Namespace, TextIO], int]) -> Callable[[argparse.Namespace, TextIO], int]:
    """A base install (`pip install quotalang`) lacks what `serve` and `manifests` import: say which extra."""

    @functools.wraps(verb)
    def run(args: argparse.Namespace, out: TextIO) -> int:
        try:
            return verb(args, out)
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").partition(".")[0]
            if not missing or missing == "quotalang":
                raise
            raise core.UsageError(
                f"quotalang {args.verb} needs the server extra (no module named {missing!r}): "
                "pip install 'quotalang[server]'"
            ) from None

    return run


@_server_extra
def cmd_serve(args: argparse.Namespace, out: TextIO) -> int:
    from quotalang.server.serve import serve

    return serve(serveopts.from_args(args))


@_server_extra
def cmd_manifests(args: argparse.Namespace, out: TextIO) -> int:
    from quotalang.server import manifests as m

    if args.grant_role is not None:
        return _grant_role(args, out)
    ca_bundle = _read(args.ca_bundle)
    client_ca = _read(args.client_ca)
    if args.only is not None and not args.cluster:
        raise core.UsageError("--only picks one part of a --cluster install: give --cluster NAME")
    if bool(args.cluster) != bool(args.webhook_url):
        raise core.UsageError("--cluster and --webhook-url go together: the member clusters, and the hub's https "
                              "address they call")
    if args.helm_values and (args.output_dir or args.cluster):
        raise core.UsageError("--helm-values prints the chart's values for one cluster: leave out --output-dir "
                              "and --cluster")
    if args.output_dir and args.format == "json":
        raise core.UsageError("--output-dir writes YAML files: leave out --format json")
    # Flags left out take Options' defaults, written once (server/manifests/options.py).
    given: dict[str, Any] = {k: v for k, v in (("failure_policy", args.failure_policy), ("replicas", args.replicas),
                                                ("timeout_seconds", args.timeout_seconds), ("store", args.store))
                             if v is not None}
    if args.priority_class is not None:
        given["priority_class"] = args.priority_class or None  # '' for none
    options = m.Options(
        image=args.image,
        tls_secret=args.tls_secret,
        ca_bundle=ca_bundle,
        cert_manager=args.cert_manager,
        cert_manager_issuer=_issuer(args.cert_manager_issuer),
        embed_self_signed=args.embed_self_signed,
        kube_version=m.parse_kube_version(args.kube_version),
        exempt_namespaces=tuple(args.exempt_namespace or ()),
        webhook_from=tuple(args.webhook_from or ()),
        metrics_from_namespace=args.metrics_from_namespace,
        namespace_selector=_labels(args.namespace_label or ()),
        sqlite_claim=args.sqlite_claim,
        client_ca=client_ca,
        client_names=tuple(args.client_name or ()),
        prometheus_operator=args.prometheus_operator,
        aggregated_api=args.aggregated_api,
        **given,
    )
    if args.helm_values:
        from quotalang.server.manifests.chart import chart_values

        values = chart_values(args.policy, options)
        out.write("# values for charts/quotalang, from `quotalang manifests --helm-values` (helm install -f FILE)\n")
        out.write(yaml.safe_dump(values, sort_keys=False, default_flow_style=False, width=120))
        return core.EXIT_OK
    notes: list[str] = []
    if args.cluster:
        targets = m.fleet_manifests(args.policy, args.namespace, args.cluster, args.webhook_url, options)
        if args.only is not None and args.only not in targets:
            raise core.UsageError(f"--only {args.only}: give {m.HUB} or one of the --cluster names "
                                  f"({', '.join(args.cluster)})")
        if not args.output_dir and args.only is None:
            raise core.UsageError("--cluster makes objects for several clusters: give --output-dir DIR (a folder "
                                  f"each) or --only {m.HUB}|NAME to print one cluster's part")
        if args.only is None:
            written = m.write_fleet_dir(targets, args.namespace, Path(args.output_dir))
            _warn_private_key(args)
            out.write(f"wrote {len(written)} files to {args.output_dir}, a folder per cluster; apply each with "
                      f"kubectl apply -k {args.output_dir}/NAME in its cluster ({m.HUB}: the hub)\n")
            return core.EXIT_OK
        docs = targets[args.only]
        notes = m.fleet_notes(args.only, args.namespace, args.cluster)
    else:
        docs = m.manifests(args.policy, args.namespace, options)
    if m.has_private_key(docs):
        _warn_private_key(args)
    if args.output_dir:
        written = m.write_dir(docs, args.namespace, Path(args.output_dir), notes)
        out.write(f"wrote {len(written)} files to {args.output_dir}; apply with: kubectl apply -k {args.output_dir}\n")
    elif args.format == "json":
        out.write(orjson.dumps({"apiVersion": "v1", "kind": "List", "items": docs},
                               option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(m.render_yaml(docs, args.namespace, notes))
    return core.EXIT_OK


def _grant_role(args: argparse.Namespace, out: TextIO) -> int:
    """`--grant-role GROUP`: the ClusterRole whose binding lets users charge GROUP under `authorize users`."""
    from quotalang.compiler import compile_policy
    from quotalang.server import manifests as m

    group = args.grant_role
    policy = compile_policy(args.policy)
    if group not in policy.groups:
        near = policy.near_groups(group)
        raise core.UsageError(f"--grant-role {group}: no such group" + (f"; did you mean {', '.join(near)}?"
                                                                         if near else ""))
    role = m.group_user_role(group)
    if args.format == "json":
        out.write(orjson.dumps(role, option=orjson.OPT_INDENT_2).decode() + "\n")
        return core.EXIT_OK
    path = policy.groups[group].path
    out.write(f"# lets the subjects bound to it charge quota group {path} under `authorize users`:\n"
              f"#   kubectl create rolebinding {role['metadata']['name']} -n NAMESPACE "
              f"--clusterrole={role['metadata']['name']} --user=NAME\n")
    out.write(yaml.safe_dump(role, sort_keys=False, default_flow_style=False, width=120))
    return core.EXIT_OK


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise core.UsageError(f"cannot read {path}: {exc.strerror}") from None


def _issuer(text: str | None) -> tuple[str, str] | None:
    """`ClusterIssuer/letsencrypt` → ("ClusterIssuer", "letsencrypt")."""
    if text is None:
        return None
    kind, _, name = text.partition("/")
    if kind not in ("Issuer", "ClusterIssuer") or not name:
        raise core.UsageError(f"--cert-manager-issuer {text!r}: give Issuer/NAME or ClusterIssuer/NAME")
    return kind, name


def _labels(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise core.UsageError(f"--namespace-label {pair!r}: give KEY=VALUE")
        out[key] = value
    return out


def _warn_private_key(args: argparse.Namespace) -> None:
    if args.embed_self_signed:
        print("quotalang manifests: warning: --embed-self-signed prints a private key; keep the output out of "
              "Git and CI logs, and note that nothing renews this certificate", file=sys.stderr)


def add_server_verbs(verbs: core.Verbs) -> None:
    """Add `serve` and `manifests` to the core parser (a `quotalang.cli.build_parser` extension)."""
    serve = verbs.add(
        "serve", "run the admission webhook (no cluster needed: a local SQLite ledger)", cmd_serve, formats=(),
        description="Run the admission webhook: POST /validate, /healthz, /readyz on --port; /metrics, /api/* "
        "and the pages on --api-port.",
    )
    serveopts.add_arguments(serve)

    man = verbs.add(
        "manifests", "print the Kubernetes manifests that run the webhook", cmd_manifests, formats=(),
        description="Print ready-to-apply YAML: RBAC, policy ConfigMap, Deployment, NetworkPolicy, "
        "Service, PodDisruptionBudget and ValidatingWebhookConfiguration.",
    )
    man.add_argument("--format", choices=["text", "json"], default="text", help="text is YAML")
    man.add_argument("--policy", action="append", required=True, metavar="DIR")
    man.add_argument("--namespace", required=True, metavar="NS")
    man.add_argument("--image", required=True, metavar="REF",
                     help="the image reference the Deployment runs, as pushed to your registry "
                     "(README: Build the image)")
    man.add_argument("--failure-policy", choices=["Fail", "Ignore"], help="default Fail")
    man.add_argument("--timeout-seconds", type=positive_int, metavar="N",
                     help="how long the apiserver waits for one review (1..30; default 5)")
    man.add_argument("--replicas", type=positive_int, help="default 2")
    man.add_argument("--tls-secret", metavar="NAME", help="mount this existing kubernetes.io/tls Secret")
    man.add_argument("--ca-bundle", metavar="FILE", help="PEM CA that signed --tls-secret's certificate")
    man.add_argument("--cert-manager", action="store_true",
                     help="cert-manager issues and renews the certificate (Issuer, Certificate, CA injection)")
    man.add_argument("--embed-self-signed", action="store_true",
                     help="print a self-signed serving pair, private key included (a warning; nothing renews it)")
    man.add_argument("--cert-manager-issuer", metavar="KIND/NAME",
                     help="with --cert-manager: your Issuer/NAME or ClusterIssuer/NAME (default: a self-signed Issuer)")
    man.add_argument("--kube-version", default="1.21", metavar="X.Y",
                     help="the oldest Kubernetes to apply to (default 1.21; 1.20 uses policy/v1beta1 and "
                     "exempts namespaces by a label quotalang guards)")
    man.add_argument("--priority-class", metavar="NAME",
                     help="the webhook pods' priorityClassName ('' for none; default system-cluster-critical)")
    man.add_argument("--exempt-namespace", action="append", metavar="NS",
                     help="a namespace quota does not apply to (repeatable), fixed at install time; kube-system and "
                     "--namespace always are")
    man.add_argument("--webhook-from", action="append", metavar="CIDR",
                     help="NetworkPolicy: admit webhook calls only from these addresses (repeatable; the control "
                     "plane's); default anywhere")
    man.add_argument("--metrics-from-namespace", metavar="NS",
                     help="NetworkPolicy: admit the API port (/metrics, /api, the pages) only from this namespace "
                     "(default anywhere: a token RBAC allows is needed there anyway; Kubernetes >= 1.21)")
    man.add_argument("--aggregated-api", action="store_true",
                     help="also serve quota as a Kubernetes API (visibility.quotalang.dev: kubectl get quotagroups, "
                     "the pages through kubectl proxy): APIService, viewer ClusterRole, --aggregated-port")
    man.add_argument("--namespace-label", action="append", metavar="KEY=VALUE",
                     help="the webhook sees only namespaces with this label (repeatable: all of them), "
                     "besides skipping the exempt ones")
    man.add_argument("--store", choices=["kubernetes", "sqlite"],
                     help="kubernetes: a ledger object per group, shared by every replica (default); sqlite: one "
                     "replica's file on --sqlite-claim")
    man.add_argument("--sqlite-claim", metavar="PVC", help="with --store sqlite: the claim holding the file")
    man.add_argument("--client-ca", metavar="FILE",
                     help="mutual TLS: only a client certificate from this CA (the apiserver's, through its "
                     "AdmissionConfiguration; docs/operations.md) may call the webhook")
    man.add_argument("--client-name", action="append", metavar="NAME",
                     help="with --client-ca: the certificate must also name this (CN or SAN; repeatable)")
    man.add_argument("--prometheus-operator", action="store_true",
                     help="add a ServiceMonitor and the alerts as a PrometheusRule (the Prometheus Operator's kinds); "
                     "bind Prometheus to quotalang-metrics-reader")
    man.add_argument("--cluster", action="append", metavar="NAME",
                     help="several clusters: a member cluster (repeatable; the hub's serve gets --cluster NAME=... "
                     "from a kubeconfig Secret, the member a webhook configuration calling --webhook-url/validate/NAME "
                     "and read-only RBAC for the hub's watcher)")
    man.add_argument("--webhook-url", metavar="URL",
                     help="with --cluster: the hub's https address the members' apiservers call")
    man.add_argument("--only", metavar="hub|NAME",
                     help="with --cluster: print only the hub's part, or member NAME's (else --output-dir writes a "
                     "folder each)")
    man.add_argument("--grant-role", metavar="GROUP",
                     help="print only the ClusterRole granting `use` on quota group GROUP, which `authorize users` "
                     "asks for (bind it where GROUP's users create workloads)")
    man.add_argument("--helm-values", action="store_true",
                     help="print the Helm chart's values (charts/quotalang) that render this same install: the "
                     "policy's files and kinds included")
    man.add_argument("--output-dir", metavar="DIR",
                     help="write one file per object and a kustomization.yaml (kubectl apply -k DIR) instead of "
                     "printing")


def build_parser() -> argparse.ArgumentParser:
    """The core parser with `serve` and `manifests` added."""
    return core.build_parser(add_server_verbs)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """The console script: `quotalang.cli.main` with the server verbs."""
    return core.main(argv, out, extensions=(add_server_verbs,))


if __name__ == "__main__":
    sys.exit(main())
