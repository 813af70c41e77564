"""The per-template usage cache: shared by templates that differ only where usage cannot."""

from __future__ import annotations

import copy
from typing import Any

from quotalang import usage
from quotalang.compiler import compile_sources
from quotalang.evaluator import evaluate
from quotalang.loader import load_text
from quotalang.usage import usage_key, workload_usage

POLICY = """
settings {
  group label "team"
}
group ml {
  requests.cpu 100
}
kind apps/v1 Deployment {
  pods {
    replicas spec.replicas default 1
    template spec.template
  }
  scale spec.replicas
  surge spec.strategy.rollingUpdate.maxSurge default 1
}
"""


def template(cpu: str = "500m", image: str = "app:1", app: str = "web") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": app}},
        "spec": {
            "containers": [
                {"name": "app", "image": image, "env": [{"name": "A", "value": "1"}],
                 "resources": {"requests": {"cpu": cpu}}},
            ],
            "initContainers": [{"name": "init", "image": "busybox", "resources": {"requests": {"cpu": "2"}}}],
        },
    }


def deployment(tmpl: dict[str, Any], replicas: int = 1) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "labels": {"team": "ml"}},
            "spec": {"replicas": replicas, "template": tmpl}}


def test_images_env_and_labels_do_not_change_the_key() -> None:
    assert usage_key(template()) == usage_key(template(image="app:2", app="api"))


def test_every_field_pod_usage_reads_changes_the_key() -> None:
    base = usage_key(template())
    changed = []
    for mutate in (
        lambda t: t["spec"]["containers"][0]["resources"]["requests"].update(cpu="600m"),
        lambda t: t["spec"]["containers"][0].update(name="other"),
        lambda t: t["spec"]["initContainers"][0].update(restartPolicy="Always"),
        lambda t: t["spec"].update(overhead={"cpu": "100m"}),
        lambda t: t["spec"].update(resources={"requests": {"cpu": "3"}}),
        lambda t: t.update(status={"phase": "Succeeded"}),
        lambda t: t["metadata"].update(deletionTimestamp="2026-01-01T00:00:00Z"),
    ):
        t = template()
        mutate(t)
        changed.append(usage_key(t) != base)
    assert changed == [True] * 7


def test_malformed_templates_fall_back_to_the_whole_template() -> None:
    broken = template()
    broken["spec"]["containers"] = ["not a container"]
    other = copy.deepcopy(broken)
    other["metadata"]["labels"]["app"] = "api"
    assert usage_key(broken) != usage_key(other)  # the whole template, labels included


def test_shared_entry_gives_each_template_its_own_exact_usage() -> None:
    policy = compile_sources(load_text(POLICY, "p.quota"))
    obj = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "labels": {"team": "ml"}},
           "spec": {"replicas": 3, "template": template()}}
    twin = copy.deepcopy(obj)
    twin["spec"]["template"]["spec"]["containers"][0]["image"] = "app:2"
    # init 2 cores > app 500m: each pod requests 2 cores; 3 replicas = 6 cores.
    assert workload_usage(policy, obj).total["requests.cpu"] == 6 * 10**9
    assert workload_usage(policy, twin).total["requests.cpu"] == 6 * 10**9


def test_an_image_change_is_still_a_rollout_that_needs_surge_room() -> None:
    policy = compile_sources(load_text(POLICY, "p.quota"))
    old = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a", "labels": {"team": "ml"}},
           "spec": {"replicas": 3, "template": template()}}
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "app:2"
    # 3 pods × 2 cores used; the rollout needs one surge pod of 2 cores more.
    decision = evaluate(policy, new, "UPDATE", old=old, usage={"ml": {"requests.cpu": "99"}})
    assert not decision.allowed
    assert [v.resource for v in decision.violations] == ["requests.cpu"]
    same = evaluate(policy, copy.deepcopy(old), "UPDATE", old=old, usage={"ml": {"requests.cpu": "99"}})
    assert same.allowed


def test_the_cache_is_a_bounded_lru_that_evicts_the_oldest_not_everything(monkeypatch: Any) -> None:
    from cachetools import LRUCache

    small: LRUCache[Any, Any] = LRUCache(3)
    monkeypatch.setattr(usage, "_per_pod", small)
    policy = compile_sources(load_text(POLICY, "p.quota"))
    keys = []
    for cpu in ("1", "2", "3"):
        workload_usage(policy, deployment(template(cpu=cpu)))
        keys.append(next(k for k in small if k not in keys))
    workload_usage(policy, deployment(template(cpu="1")))  # a hit: now the most recent
    workload_usage(policy, deployment(template(cpu="4")))  # evicts cpu=2, the least recent
    assert len(small) == 3
    assert keys[0] in small and keys[1] not in small and keys[2] in small


def test_the_cache_is_keyed_by_content_and_shared_by_policies() -> None:
    first = compile_sources(load_text(POLICY, "p.quota"))
    second = compile_sources(load_text(POLICY + "\n# reloaded\n", "p.quota"))
    obj = deployment(template(cpu="777m"))
    assert workload_usage(first, obj).total == workload_usage(second, obj).total
    assert sum(1 for k in usage._per_pod if k[0] == usage_key(obj["spec"]["template"])) == 1


def large_template(tag: str, containers: int = 2000, resources: bool = True) -> dict[str, Any]:
    """About 1.4 MB of shape: `containers` containers with 600-character names (what pod usage reads)."""
    spec = []
    for n in range(containers):
        container: dict[str, Any] = {"name": f"{tag}-{n}-" + "c" * 600}
        if resources:
            both = {"cpu": "1m", "memory": "1Mi"}
            container["resources"] = {"requests": both, "limits": dict(both)}
        spec.append(container)
    return {"spec": {"containers": spec}}


def test_the_cache_keys_on_a_digest_and_keeps_no_shape(monkeypatch: Any) -> None:
    """Issue 25 #10: each distinct 1.8 MB review added 1.94 MB to the cache (it kept the shape as its key)."""
    import tracemalloc

    from cachetools import LRUCache

    monkeypatch.setattr(usage, "_per_pod", LRUCache(usage.CACHE_BYTES, getsizeof=usage._entry_bytes))
    policy = compile_sources(load_text(POLICY, "p.quota"))
    templates = [large_template(f"t{i}") for i in range(12)]
    assert len(usage._shape(templates[0])) > 1_300_000
    assert len(usage_key(templates[0])) == 32
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for tmpl in templates:
            assert workload_usage(policy, deployment(tmpl)).total["requests.cpu"] == 2000 * 10**6  # 2000 × 1m
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(usage._per_pod) == 12
    assert kept < 12 * 20_000, kept  # a few hundred bytes an entry; it was 1.4 MB an entry


def test_the_cache_is_bounded_in_bytes_whatever_the_entries_hold(monkeypatch: Any) -> None:
    """Issue 25 #10: an entry lists the containers leaving cpu unset: 2,000 long names each here."""
    from cachetools import LRUCache

    bound = 20 * 1024 * 1024  # each entry here holds about 8 MB: six resources × 2,000 names
    cache: LRUCache[Any, Any] = LRUCache(bound, getsizeof=usage._entry_bytes)
    monkeypatch.setattr(usage, "_per_pod", cache)
    policy = compile_sources(load_text(POLICY, "p.quota"))
    for i in range(12):
        workload_usage(policy, deployment(large_template(f"u{i}", resources=False)))
    (entry, *_) = cache.values()
    assert usage._entry_bytes(entry) > 6 * 2000 * 600  # the names are counted
    assert cache.currsize <= bound
    assert 0 < len(cache) < 12  # the oldest were evicted
