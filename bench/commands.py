"""The command line at scale: ``seguard check`` over a GitOps repository of thousands of
ServiceEntries, and the memory ``seguard serve`` holds for a registry read from files.

Each case runs the command as a user does, in a process of its own, and reads its wall time and
peak RSS (``wait4``'s ru_maxrss). The figure that matters for ``check`` is how the time grows
with the manifests: linear gives the same microseconds per manifest at 5k, 20k and 40k.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from bench.procs import free_port, memory_mb, wait_ready

_DUMPER: Any = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def service_entries(count: int, *, namespaces: int = 50) -> Iterator[dict[str, Any]]:
    """``count`` ServiceEntries as a GitOps repository holds them: mostly their own hosts, one in
    fifty a host another namespace already holds, one in a hundred a wildcard."""
    for i in range(count):
        if i % 50 == 49:
            hosts = [f"api{i - 1}.vendor{(i - 1) % 100}.example.com"]  # held by the one before
        elif i % 100 == 17:
            hosts = [f"*.zone{i}.example.net"]
        else:
            hosts = [f"api{i}.vendor{i % 100}.example.com"]
        yield {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": f"entry-{i}", "namespace": f"team-{i % namespaces}"},
            "spec": {
                "hosts": hosts,
                "ports": [{"number": 443, "name": "https", "protocol": "TLS"}],
                "resolution": "DNS",
            },
        }


def write_manifests(folder: Path, count: int, *, per_file: int = 500) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    batch: list[dict[str, Any]] = []
    for index, obj in enumerate(service_entries(count)):
        batch.append(obj)
        if len(batch) == per_file or index == count - 1:
            path = folder / f"entries-{index // per_file:05d}.yaml"
            path.write_text(yaml.dump_all(batch, Dumper=_DUMPER, sort_keys=False))
            batch = []
    return folder


def _timed(command: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB and the exit code of one command. The peak is the process's
    own VmHWM, read from /proc until it exits: ``wait4``'s ru_maxrss would count the pages of
    this process, which the child held between fork and exec."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = Path(f"/proc/{proc.pid}/status")
    peak = 0.0
    while proc.poll() is None:
        try:
            text = status.read_text()
        except OSError:
            break
        for line in text.splitlines():
            if line.startswith("VmHWM:"):
                peak = max(peak, int(line.split()[1]) / 1024)
        time.sleep(0.01)
    proc.wait()
    return time.perf_counter() - started, peak, proc.returncode


def check_costs(work: Path, sizes: tuple[int, ...] = (5_000, 20_000, 40_000)) -> dict[str, Any]:
    """``seguard check <folder> -o json`` at each size: seconds, µs per manifest, peak RSS."""
    cases = []
    for count in sizes:
        folder = write_manifests(work / f"check-{count}", count)
        seconds, peak, code = _timed(
            [sys.executable, "-m", "webhook.cli", "check", str(folder), "-o", "json"]
        )
        cases.append(
            {
                "manifests": count,
                "seconds": round(seconds, 2),
                "us_per_manifest": round(seconds / count * 1e6),
                "peak_rss_mb": round(peak, 1),
                "exit": code,
            }
        )
    first, last = cases[0], cases[-1]
    return {
        "cases": cases,
        # Linear: about 1 (the same cost per manifest at the largest size as at the smallest).
        "growth": round(last["us_per_manifest"] / first["us_per_manifest"], 2),
    }


def serve_memory(
    work: Path, cert_dir: Path, sizes: tuple[int, ...] = (10_000, 40_000, 100_000)
) -> dict[str, list[dict[str, Any]]]:
    """RSS of ``seguard serve`` once ready, by registry size: following an API server (the
    Deployment's case: Services and ServiceEntries, as the throughput case holds them), and
    reading ServiceEntries from files (``--registry-dir``, for development)."""
    from bench.cluster import api_server

    found: dict[str, list[dict[str, Any]]] = {"api": [], "files": []}
    for count in sizes:
        cluster = api_server(count)
        try:
            kubeconfig = cluster.kubeconfig(work / f"kubeconfig-{count}")
            found["api"].append(_ready_memory(count, ["--kubeconfig", str(kubeconfig)], cert_dir))
        finally:
            cluster.stop()
        folder = write_manifests(work / f"serve-{count}", count, per_file=2_000)
        found["files"].append(_ready_memory(count, ["--registry-dir", str(folder)], cert_dir))
    return found


def _ready_memory(count: int, source: list[str], cert_dir: Path) -> dict[str, Any]:
    port, ops = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "webhook.cli", "serve", *source, "--cert-dir", str(cert_dir),
            "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(ops),
            "--no-audit-stdout", "--drain-seconds", "0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        startup = wait_ready(f"http://127.0.0.1:{ops}/readyz", proc)
        time.sleep(1.0)  # the first policy and certificate polls
        rss, peak = memory_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    return {
        "objects": count,
        "startup_s": round(startup, 2),
        "rss_mb": round(rss, 1),
        "peak_mb": round(peak, 1),
    }


def write_audit_file(path: Path, megabytes: int) -> int:
    """An audit file of about ``megabytes`` MiB of denial records; returns how many."""
    import orjson

    count = 0
    with path.open("wb") as out:
        while out.tell() < megabytes * 1024 * 1024:
            record = {
                "schemaVersion": 1, "event": "admission.decision", "level": "warning",
                "time": f"2026-12-0{1 + count % 3}T10:{count // 60 % 60:02d}:{count % 60:02d}.000Z",
                "webhook": "validate", "uid": f"uid-{count}", "operation": "CREATE",
                "dryRun": False, "user": f"user-{count % 40}", "groups": ["devs"],
                "namespace": f"team-{count % 50}", "name": f"entry-{count}", "kind": "ServiceEntry",
                "version": "v1", "hosts": [f"api{count}.example.com"], "decision": "denied",
                "mode": "Enforce", "exemption": None, "policyGeneration": 1,
                "findings": [{
                    "code": "ConflictServiceEntry", "host": f"api{count}.example.com",
                    "action": "Deny", "outcome": "denied", "message": "x" * 180,
                    "owner": {"kind": "ServiceEntry", "namespace": "team-a", "name": "held",
                              "host": f"api{count}.example.com", "exportTo": "*"},
                }],
            }  # fmt: skip
            out.write(orjson.dumps(record) + b"\n")
            count += 1
    return count


def audit_costs(work: Path, megabytes: int = 100) -> dict[str, Any]:
    """``seguard audit --file`` over a file of ``megabytes`` MiB, as a table and as JSON lines:
    seconds and peak RSS, which must not grow with the file (the records are streamed)."""
    path = work / "audit.log"
    records = write_audit_file(path, megabytes)
    found: dict[str, Any] = {"file_mb": megabytes, "records": records}
    for output in ("table", "json"):
        seconds, peak, code = _timed(
            [sys.executable, "-m", "webhook.cli", "audit", "--file", str(path), "-o", output]
        )
        found[output] = {"seconds": round(seconds, 1), "peak_rss_mb": round(peak, 1), "exit": code}
    small = work / "audit-small.log"
    write_audit_file(small, 1)
    _, found["peak_rss_1mb_file_mb"], _ = _timed(
        [sys.executable, "-m", "webhook.cli", "audit", "--file", str(small)]
    )
    found["peak_rss_1mb_file_mb"] = round(found["peak_rss_1mb_file_mb"], 1)
    return found
