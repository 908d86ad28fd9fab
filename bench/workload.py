"""What the benchmark feeds the server: a registry of N objects and realistic AdmissionReviews."""

from __future__ import annotations

import copy
import ipaddress
import json
import random
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# A real AdmissionReview as a Kubernetes 1.36 API server sent it (managedFields, the
# last-applied annotation and all), used as the template for every request body.
TEMPLATE = ROOT / "tests" / "data" / "admission-reviews" / "00-mutating-create-v1.json"
SERVICES_SHARE = 0.6  # of the registry; the rest are ServiceEntries
WILDCARD_SHARE = 0.05  # of the ServiceEntries
OBJECTS_PER_NAMESPACE = 200
# Every Service has a cluster IP, as in a real cluster (kubeadm's default service CIDR; a /12
# holds a million addresses).
SERVICE_CIDR = ipaddress.IPv4Network("10.96.0.0/12")


def registry_objects(entries: int, *, seed: int = 7) -> list[dict[str, Any]]:
    """Namespaces (with labels), Services and ServiceEntries: ``entries`` Services and
    ServiceEntries in all, spread over namespaces, some wildcards, some exportTo ".", some named."""
    rng = random.Random(seed)
    namespaces = max(1, entries // OBJECTS_PER_NAMESPACE)
    objects: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": f"ns-{n}",
                "labels": {"team": f"team-{n % 37}", "tier": rng.choice(["gold", "silver"])},
            },
        }
        for n in range(namespaces)
    ]
    services = int(entries * SERVICES_SHARE)
    for i in range(services):
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": f"svc-{i}",
                    "namespace": f"ns-{i % namespaces}",
                    "creationTimestamp": "2026-01-01T00:00:00Z",
                },
                "spec": {
                    "clusterIP": str(SERVICE_CIDR[i + 1]),
                    "clusterIPs": [str(SERVICE_CIDR[i + 1])],
                    "ports": [{"name": "http", "port": 8080}],
                },
            }
        )
    # Draws of their own, so ServiceEntry i is the same (host, exportTo) in every registry size.
    rng = random.Random(seed + 1)
    for i in range(entries - services):
        wildcard = rng.random() < WILDCARD_SHARE
        host = f"*.v{i}.example.net" if wildcard else f"api{i}.vendor{i % 997}.example.com"
        spec: dict[str, Any] = {
            "hosts": [host],
            "location": "MESH_EXTERNAL",
            "resolution": "NONE" if wildcard else "DNS",
            "ports": [{"name": "tls", "number": 443, "protocol": "TLS"}],
        }
        roll = rng.random()
        if roll < 0.1:
            spec["exportTo"] = ["."]
        elif roll < 0.2:
            spec["exportTo"] = [".", f"ns-{(i + 1) % namespaces}"]
        objects.append(
            {
                "apiVersion": "networking.istio.io/v1",
                "kind": "ServiceEntry",
                "metadata": {
                    "name": f"se-{i}",
                    "namespace": f"ns-{i % namespaces}",
                    "creationTimestamp": "2026-02-01T00:00:00Z",
                },
                "spec": spec,
            }
        )
    return objects


def write_registry(folder: Path, entries: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "registry.json"
    path.write_text(
        json.dumps({"apiVersion": "v1", "kind": "List", "items": registry_objects(entries)})
    )
    return path


def _review(name: str, namespace: str, hosts: list[str], version: str, n: int) -> dict[str, Any]:
    review: dict[str, Any] = json.loads(TEMPLATE.read_text())
    request = review["request"]
    request["uid"] = f"00000000-0000-4000-8000-{n:012d}"
    request["name"] = name
    request["namespace"] = namespace
    request["requestKind"]["version"] = version
    request["requestResource"]["version"] = version
    obj = request["object"]
    obj["metadata"]["name"] = name
    obj["metadata"]["namespace"] = namespace
    obj["spec"] = {"hosts": hosts, "ports": [{"name": "tls", "number": 443, "protocol": "TLS"}]}
    last = json.loads(
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
    )
    last["metadata"].update(name=name, namespace=namespace)
    last["spec"] = copy.deepcopy(obj["spec"])
    obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] = (
        json.dumps(last) + "\n"
    )
    return review


def request_mix(entries: int, *, count: int = 60) -> list[tuple[str, str, bytes]]:
    """(kind, path, body) for a mix of allows (40%), denials (30%: a host another namespace's
    ServiceEntry holds, a Service's alias, or, with an empty registry, the policy) and mutations
    (30%), across
    the v1, v1beta1 and v1alpha3 request kinds."""
    versions = ("v1", "v1beta1", "v1alpha3")
    services = int(entries * SERVICES_SHARE)
    entry_count = entries - services
    mix: list[tuple[str, str, bytes]] = []
    for n in range(count):
        version = versions[n % 3]
        slot = n % 10
        if slot < 4:
            kind, path = "allow", "/validate"
            review = _review(
                f"allowed-{n}", "bench", [f"bench-{n}.allowed.example.org"], version, n
            )
        elif slot < 7:
            path = "/validate"
            if entries == 0:
                kind = "deny-policy"
                hosts = ["*.com"] if n % 2 else ["bad_host.example.org"]
            elif n % 2 and entry_count:
                kind = "deny-entry"
                i = (n * 7919) % entry_count  # a ServiceEntry's host, from another namespace
                hosts = [f"api{i}.vendor{i % 997}.example.com"]
            else:
                kind = "deny-service"
                i = (n * 7919) % max(1, services)  # a Service's alias
                namespaces = max(1, entries // OBJECTS_PER_NAMESPACE)
                hosts = [f"svc-{i}.ns-{i % namespaces}"]
            review = _review(f"denied-{n}", "bench", hosts, version, n)
        else:
            kind, path = "mutate", "/mutate"
            review = _review(
                f"mutated-{n}", "bench", [f"bench-{n}.mutated.example.org"], version, n
            )
        mix.append((kind, path, json.dumps(review, separators=(",", ":")).encode()))
    return mix


def wrk_script(mix: list[tuple[str, str, bytes]], folder: Path, *, pace_ms: float | None) -> Path:
    """A wrk Lua script that cycles through the mix, optionally pacing each connection, and
    prints latency percentiles (microseconds) as JSON when done."""
    bodies = folder / "bodies.lua"
    lines = ["return {"]
    for _, path, body in mix:
        lines.append(f"  {{ {json.dumps(path)}, [==[{body.decode()}]==] }},")
    lines.append("}")
    bodies.write_text("\n".join(lines))
    script = folder / ("paced.lua" if pace_ms else "saturate.lua")
    # Paced connections send at random: exponential gaps with the pace as their mean (Poisson
    # arrivals, as independent clients of an API server make them). A fixed delay would keep the
    # connections in step, so that every 10 ms all of them send at once, and the latency would
    # mostly measure that burst's queue. wrk's timer counts whole milliseconds: the gap is
    # rounded up or down at random, so its mean stays the pace.
    pace = (
        f"""
math.randomseed(7)
function delay()
  local gap = -{pace_ms} * math.log(1 - math.random())
  return math.floor(gap + math.random())
end
"""
        if pace_ms
        else ""
    )
    script.write_text(
        f"""
local requests = dofile({json.dumps(str(bodies))})
local i = 0
local headers = {{ ["Content-Type"] = "application/json" }}
request = function()
  i = (i % #requests) + 1
  return wrk.format("POST", requests[i][1], headers, requests[i][2])
end
{pace}
done = function(summary, latency, requests)
  io.write(string.format('{{"requests": %d, "errors": %d, "p50": %d, "p99": %d, "p999": %d, "max": %d}}\\n',
    summary.requests, summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
"""
    )
    return script
