"""`serve --cluster NAME=KUBECONFIG` and `--ledger-cluster`: the checks, and which cluster is the hub."""

from __future__ import annotations

from pathlib import Path

import pytest

from quotalang.server.cli import build_parser, main
from quotalang.server.clusters import ClusterError, ClusterSpec, plan
from tests.server.test_server_cli import EXAMPLES, keep_logging, own_state

__all__ = ["keep_logging", "own_state"]  # autouse fixtures: serve configures logging and may open a ledger


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.fixture
def configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """k1, k2 (files the checks find; nothing connects before they pass) and bad (not a kubeconfig)."""
    for name in ("k1", "k2"):
        (tmp_path / name).write_text(KUBECONFIG)
    (tmp_path / "bad").write_text("this is: [not a kubeconfig\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_parser_takes_clusters_and_the_ledger_cluster() -> None:
    args = build_parser().parse_args(["serve", "--policy", "p", "--cluster", "a=k1", "--cluster", "b=in-cluster",
                                      "--ledger-cluster", "b"])
    assert (args.cluster, args.ledger_cluster) == (["a=k1", "b=in-cluster"], "b")


def test_the_hub_is_the_named_one_else_the_only_one_else_the_in_cluster_one(configs: Path) -> None:
    found = plan(["a=k1", "b=in-cluster"], "a")
    assert found.members == (ClusterSpec("a", "k1"), ClusterSpec("b", None))
    assert found.names == ("a", "b") and found.several
    assert found.hub == ClusterSpec("a", "k1")
    assert plan(["a=k1"], None).hub == ClusterSpec("a", "k1")
    assert plan(["a=k1", "b=in-cluster"], None).hub == ClusterSpec("b", None)
    assert plan(["a=k1", "b=k2"], None).hub is None
    # A hub that is not watched: named for logs, no route, no watch.
    unwatched = plan(["a=k1"], "hub=k2")
    assert unwatched.hub == ClusterSpec("hub", "k2", watched=False) and unwatched.names == ("a",)


def test_the_single_cluster_form_is_the_cluster_named_empty() -> None:
    found = plan([], None, kubeconfig="k")
    assert found.members == (ClusterSpec("", "k"),) and found.hub == ClusterSpec("", "k")
    assert not found.several
    assert plan([], None, in_cluster=True).hub == ClusterSpec("", None)
    assert plan([], None).members == ()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cluster", "a"], "--cluster 'a': give NAME=KUBECONFIG, or NAME=in-cluster"),
        (["--cluster", "East=k1"], "'East' is not a cluster name (a DNS label"),
        (["--cluster", "a=nope"], "no such kubeconfig file: nope"),
        (["--cluster", "a=k1", "--cluster", "a=k2"], "--cluster a is given twice"),
        (["--cluster", "a=k1", "--cluster", "b=./k1"], "--cluster b and --cluster a are the same cluster"),
        (["--cluster", "a=in-cluster", "--cluster", "b=in-cluster"], "are the same cluster (in-cluster)"),
        (["--cluster", "a=k1", "--kubeconfig", "k2"], "--kubeconfig and --in-cluster are the single-cluster form"),
        (["--cluster", "a=k1", "--in-cluster"], "use one form"),
        (["--ledger-cluster", "a"], "--ledger-cluster names one of the --cluster clusters"),
        (["--cluster", "a=k1", "--cluster", "b=k2", "--ledger-cluster", "c"],
         "--ledger-cluster c is not one of the --cluster names (a, b)"),
        (["--cluster", "a=k1", "--ledger-cluster", "a=k2"], "a is a --cluster already"),
        (["--cluster", "a=k1", "--ledger-cluster", "hub=k1"], "--ledger-cluster hub=k1 is --cluster a"),
        (["--cluster", "a=k1", "--cluster", "b=k2", "--store", "kubernetes"],
         "--store kubernetes keeps its QuotaLedgers and Lease in one cluster; that cluster lives in one cluster, "
         "and with several (--cluster a, b) none is chosen: give --ledger-cluster NAME"),
        (["--cluster", "a=k1", "--cluster", "b=k2", "--api-insecure", "--cert-secret", "s"],
         "--cert-secret keeps the serving pair in a Secret"),
        (["--cluster", "a=k1", "--cluster", "b=k2"], "the API port asks one apiserver about bearer tokens"),
        (["--cluster", "a=k1", "--cluster", "b=bad", "--api-insecure"],
         "cannot configure the kubernetes client for cluster b"),
    ],
    ids=["no-kubeconfig", "bad-name", "missing-file", "name-twice", "same-file", "in-cluster-twice",
         "with-kubeconfig", "with-in-cluster", "ledger-without-clusters", "ledger-not-registered",
         "ledger-renames-a-member", "ledger-is-a-member", "kubernetes-store-without-hub", "cert-secret-without-hub",
         "token-check-without-hub", "bad-kubeconfig"],
)
def test_cluster_usage_errors_exit_2(
    configs: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["serve", "--policy", str(EXAMPLES), "--insecure-http", *args]) == 2
    assert message in capsys.readouterr().err


def test_plan_raises_cluster_errors(configs: Path) -> None:
    with pytest.raises(ClusterError, match="is given twice"):
        plan(["a=k1", "a=k2"], None)


def test_serve_builds_a_controller_per_cluster_in_one_fleet_over_one_ledger(configs: Path) -> None:
    from quotalang.controller import MemoryLedger
    from quotalang.server.metrics import Metrics
    from quotalang.server.reload import PolicyHolder
    from quotalang.server.serve import ServeOptions, _clusters, _Runtime

    opts = ServeOptions(policy=[str(EXAMPLES)], clusters=("east=k1", "west=k2"), api_insecure=True)
    found = _clusters(opts)
    runtime = _Runtime(opts, found, PolicyHolder(), Metrics())
    ledger = runtime.build()
    assert isinstance(ledger, MemoryLedger) and not ledger.standalone
    assert runtime.controller is None and runtime.fleet is not None
    assert {n: c.cluster for n, c in runtime.fleet.controllers.items()} == {"east": "east", "west": "west"}
    assert all(c.ledger is ledger for c in runtime.fleet.controllers.values())
    assert sorted(runtime.apis) == ["east", "west"]
    assert runtime.apis["east"] is not runtime.apis["west"]  # each cluster its own client
    assert runtime.waiting_for() == "waiting for the first full sync of clusters east, west"
    assert sorted(runtime.health()) == ["east", "west"]
    assert runtime.describe() == "memory, reconciled from clusters east, west"
