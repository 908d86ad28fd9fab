#!/usr/bin/env python3
"""The benchmark: `seguard serve` over TLS against a bare ASGI baseline, in one run.

    python bench/run.py            # registries of 0, 10k and 100k entries
    python bench/run.py --quick    # the 100k case only (under 3 minutes)

From a fresh clone it makes its own virtualenv (.venv-bench) with the project and matplotlib,
and installs wrk from Debian's packages when it is missing. It prints each target as met or
the gap, and writes bench/results/latest.json, latest.md and latency.png.

Method. The load generator is wrk (HTTP/1.1 keep-alive, TLS), running on the same machine as
the server, so figures vary from machine to machine and from minute to minute; the number that
matters is the ratio of our throughput to the baseline's, measured in interleaved rounds in the
same run (the median of each). Latency is measured at the client, at a fixed 1,000 requests/s
(10 wrk connections, each sending after an exponential gap: Poisson arrivals); the bare app's
latency under the same arrivals is measured too, for scale. CPU time per request comes from /proc for the server
process over the saturation rounds. GC pauses come from the server's own histogram
(seguard_gc_pause_seconds), as the difference across the loaded period.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as a script from anywhere: the project root first, for the bench package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cluster import api_server, churning
from bench.commands import audit_costs, check_costs, serve_memory
from bench.compiled import Core, compiled_costs, compiled_tree
from bench.micro import (
    library_floor_mb,
    lookup_costs,
    metrics_costs,
    registry_build_seconds,
    shortcut_costs,
)
from bench.procs import (
    cpu_seconds,
    ensure_environment,
    ensure_wrk,
    free_port,
    gc_histogram,
    idle_connection_kb,
    longest_pause_ms,
    loop_cpu_seconds,
    memory_mb,
    wait_ready,
    wrk,
)
from bench.report import markdown, plot, update_readme, verdicts
from bench.settings import (
    CHURN_PER_S,
    PACED_CONNECTIONS,
    PACED_RPS,
    RESULTS,
    ROOT,
    SATURATION_CONNECTIONS,
)

# The kinds of request whose server time is measured on its own: the mix's allows, mutations,
# and denials (each audited with fdatasync before it is answered).
KINDS = {
    "allow": ("allow",),
    "mutate": ("mutate",),
    "deny": ("deny-entry", "deny-service", "deny-policy"),
}
KIND_ROUNDS = 2
KIND_SECONDS = 3.0


@dataclass(frozen=True)
class Baseline:
    url: str
    pid: int


def _saturate(
    wrk_path: str, url: str, script: Path, pid: int, *, seconds: float
) -> tuple[float, float, float]:
    """Requests a second at saturation, and the process's CPU and its event loop's CPU per
    request (µs), over one wrk run."""
    process, loop = cpu_seconds(pid), loop_cpu_seconds(pid)
    run = wrk(wrk_path, url, script, seconds=seconds, connections=SATURATION_CONNECTIONS)
    served = max(1, run["requests"])
    return (
        run["rps"],
        (cpu_seconds(pid) - process) / served * 1e6,
        (loop_cpu_seconds(pid) - loop) / served * 1e6,
    )


def run_case(
    cluster: Any,
    entries: int,
    *,
    core: Core,
    latency: bool,
    wrk_path: str,
    work: Path,
    cert_dir: Path,
    baseline: Baseline,
    rounds: int,
    seconds: float,
) -> dict[str, Any]:
    """One server on ``core`` following ``cluster``: throughput against the bare app in
    interleaved rounds, the event loop's time per request by kind against the bare app's under
    the same requests, RSS under load; with ``latency``, also the paced latency (with and
    without registry churn) and the memory of idle connections."""
    from bench.workload import request_mix, wrk_script

    folder = work / f"{core.name}-n{entries}"
    folder.mkdir(parents=True)
    # The server follows an API server, as in a cluster: list (paged), then watch.
    kubeconfig = cluster.kubeconfig(folder / "kubeconfig")
    mix = request_mix(entries)
    saturate = wrk_script(mix, folder, pace_ms=None)
    paced = wrk_script(mix, folder, pace_ms=PACED_CONNECTIONS * 1000 / PACED_RPS)
    by_kind = {}
    for kind, names in KINDS.items():
        (folder / kind).mkdir()
        by_kind[kind] = wrk_script([m for m in mix if m[0] in names], folder / kind, pace_ms=None)
    port, ops = free_port(), free_port()
    proc = subprocess.Popen(
        [
            *core.python(), "-m", "webhook.cli", "serve",
            "--kubeconfig", str(kubeconfig), "--cert-dir", str(cert_dir),
            "--host", "127.0.0.1", "--port", str(port), "--metrics-port", str(ops),
            "--audit-file", str(folder / "audit.log"), "--no-audit-stdout", "--drain-seconds", "0",
        ],
        env=core.env(),
        cwd=core.root,
        stdout=subprocess.DEVNULL,
        stderr=(folder / "serve.log").open("wb"),
    )  # fmt: skip
    try:
        startup = wait_ready(f"http://127.0.0.1:{ops}/readyz", proc)
        if not core.loaded_in(proc.pid):
            sys.exit(f"bench: the server at {entries:,} entries does not run the {core.name} core")
        url = f"https://127.0.0.1:{port}"
        wrk(wrk_path, url, saturate, seconds=2, connections=SATURATION_CONNECTIONS)  # warm-up
        gc_before = gc_histogram(f"http://127.0.0.1:{ops}/metrics")
        ours, base, cpu, loop, base_loop = [], [], [], [], []
        for _ in range(rounds):
            rps, process_us, loop_us = _saturate(wrk_path, url, saturate, proc.pid, seconds=seconds)
            ours.append(rps)
            cpu.append(process_us)
            loop.append(loop_us)
            rps, _, loop_us = _saturate(
                wrk_path, baseline.url, saturate, baseline.pid, seconds=seconds
            )
            base.append(rps)
            base_loop.append(loop_us)
        kinds: dict[str, dict[str, float]] = {}
        for kind, script in by_kind.items():
            mine, theirs = [], []
            for _ in range(KIND_ROUNDS):
                mine.append(_saturate(wrk_path, url, script, proc.pid, seconds=KIND_SECONDS)[2])
                theirs.append(
                    _saturate(wrk_path, baseline.url, script, baseline.pid, seconds=KIND_SECONDS)[2]
                )
            ours_us, bare_us = statistics.median(mine), statistics.median(theirs)
            kinds[kind] = {
                "loop_us": round(ours_us, 1),
                "bare_loop_us": round(bare_us, 1),
                "ratio": round(ours_us / bare_us, 2),
            }
        # RSS under request load, read at the same point for every core (before the latency
        # runs, whose registry churn grows the heap).
        rss, peak = memory_mb(proc.pid)
        timing: dict[str, Any] = {}
        if latency:
            timing = _latency(
                cluster, entries, wrk_path=wrk_path, url=url, baseline=baseline, paced=paced,
                seconds=seconds,
            )  # fmt: skip
        gc_after = gc_histogram(f"http://127.0.0.1:{ops}/metrics")
        if latency:
            timing["rss_after_churn_mb"] = round(memory_mb(proc.pid)[0], 1)
            timing["idle_connection_kb"] = round(idle_connection_kb(port, proc.pid, cert_dir), 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    longest, over = longest_pause_ms(gc_before, gc_after)
    return {
        "entries": entries,
        "core": core.name,
        "startup_s": round(startup, 2),
        "throughput_rps": round(statistics.median(ours)),
        "baseline_rps": round(statistics.median(base)),
        "ratio": round(statistics.median(ours) / statistics.median(base), 3),
        "rounds": {"ours": [round(r) for r in ours], "baseline": [round(r) for r in base]},
        "cpu_us_per_request": round(statistics.median(cpu), 1),
        "loop_us_per_request": round(statistics.median(loop), 1),
        "baseline_loop_us_per_request": round(statistics.median(base_loop), 1),
        "kinds": kinds,
        "rss_mb": round(rss, 1),
        "rss_peak_mb": round(peak, 1),
        **timing,
        "gc_pause_max_ms": longest,
        "gc_pauses_over_2ms": over,
    }


def _latency(
    cluster: Any,
    entries: int,
    *,
    wrk_path: str,
    url: str,
    baseline: Baseline,
    paced: Path,
    seconds: float,
) -> dict[str, Any]:
    """The latency at the client at a fixed rate, the bare app's under the same arrivals, and
    ours again while the registry churns."""
    length = max(seconds * 2, 10)
    latency = wrk(wrk_path, url, paced, seconds=length, connections=PACED_CONNECTIONS)
    bare = wrk(wrk_path, baseline.url, paced, seconds=length, connections=PACED_CONNECTIONS)
    found: dict[str, Any] = {
        "paced_rps": round(latency["rps"]),
        "p50_ms": round(latency["p50"] / 1000, 3),
        "p99_ms": round(latency["p99"] / 1000, 3),
        "p999_ms": round(latency["p999"] / 1000, 3),
        "max_ms": round(latency["max"] / 1000, 3),
        "baseline_p50_ms": round(bare["p50"] / 1000, 3),
        "baseline_p99_ms": round(bare["p99"] / 1000, 3),
        "errors": latency["errors"],
    }
    if entries:
        with churning(cluster, CHURN_PER_S) as changes:
            churn = wrk(wrk_path, url, paced, seconds=length, connections=PACED_CONNECTIONS)
        found.update(
            churn_per_s=round(changes()),
            churn_p50_ms=round(churn["p50"] / 1000, 3),
            churn_p99_ms=round(churn["p99"] / 1000, 3),
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="the 100k case only")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved saturation rounds")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of one wrk run")
    parser.add_argument(
        "--readme", action="store_true", help="also put the table in bench/README.md"
    )
    args = parser.parse_args()
    ensure_environment()
    wrk_path = ensure_wrk()
    sys.path.insert(0, str(ROOT))
    from webhook import certs

    started = time.monotonic()
    entries = [100_000] if args.quick else [0, 10_000, 100_000]
    work = Path(tempfile.mkdtemp(prefix="seguard-bench-"))
    cert_dir = work / "certs"
    ca, leaf = certs.issue(dns_names=["localhost"], ip_addresses=["127.0.0.1"])
    certs.write_pairs(cert_dir, ca, leaf)
    base_port = free_port()
    baseline = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "bench" / "baseline.py"),
            "--cert-dir",
            str(cert_dir),
            "--port",
            str(base_port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)
    cases: list[dict[str, Any]] = []
    # The other core's runs: the pure one where the compiled one is built (and shipped).
    other_cases: list[dict[str, Any]] = []
    with compiled_tree() as tree:
        try:
            for n in entries:
                cluster = api_server(n)
                try:
                    # The shipped build's core (compiled, as the image builds it; else pure) gets
                    # the latency runs too, and goes last: its churn run changes the registry.
                    shipped = tree.compiled or tree.pure
                    other = tree.pure if tree.compiled else None
                    for core, into in ((other, other_cases), (shipped, cases)):
                        if core is None:
                            continue
                        print(f"bench: {n:,} entries, {core.name} core ...", flush=True)
                        into.append(
                            run_case(
                                cluster,
                                n,
                                core=core,
                                latency=core is shipped,
                                wrk_path=wrk_path,
                                work=work,
                                cert_dir=cert_dir,
                                baseline=Baseline(f"https://127.0.0.1:{base_port}", baseline.pid),
                                rounds=args.rounds,
                                seconds=args.seconds,
                            )
                        )
                finally:
                    cluster.stop()
        finally:
            baseline.send_signal(signal.SIGTERM)
            baseline.wait(30)
        print("bench: the core compiled with mypyc, against Python, in process ...", flush=True)
        compiled = compiled_costs(tree)
    print("bench: seguard check at 5k, 20k and 40k manifests ...", flush=True)
    check = check_costs(work)
    print("bench: seguard serve's memory at 10k, 40k and 100k objects ...", flush=True)
    memory_by_size = serve_memory(work, cert_dir)
    print("bench: seguard audit over a 100 MiB audit file ...", flush=True)
    audit = audit_costs(work)
    print("bench: 20k-object list and index ...", flush=True)
    build = registry_build_seconds()
    print("bench: decision cost at 0, 1k and 100k entries ...", flush=True)
    costs, endpoint = lookup_costs()
    metrics_us = metrics_costs()
    shortcuts = shortcut_costs()
    floor = library_floor_mb()
    floor_kubeconfig = library_floor_mb(kubeconfig=True)
    lookup_ratio = max(
        costs["free_100k"] / costs["free_0"], costs["conflict_100k"] / costs["conflict_1k"]
    )
    biggest = cases[-1]
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{os.cpu_count()} cores, {os.uname().machine}, Python {sys.version.split()[0]}",
        "quick": args.quick,
        "entries": biggest["entries"],
        "ratio": biggest["ratio"],
        "throughput_rps": biggest["throughput_rps"],
        "baseline_rps": biggest["baseline_rps"],
        "p50_ms": biggest["p50_ms"],
        "p99_ms": biggest["p99_ms"],
        "p999_ms": biggest["p999_ms"],
        "registry_build_s": round(build, 3),
        "rss_mb": biggest["rss_mb"],
        "rss_floor_mb": round(floor, 1),
        "rss_floor_kubeconfig_mb": round(floor_kubeconfig, 1),
        "gc_pause_max_ms": biggest["gc_pause_max_ms"],
        "lookup_us": {k: round(v, 2) for k, v in costs.items()},
        "lookup_ratio": round(lookup_ratio, 3),
        "endpoint_us": {k: round(v, 1) for k, v in endpoint.items()},
        "metrics_us": {k: round(v, 2) for k, v in metrics_us.items()},
        "shortcuts_us": {k: [round(a, 3), round(b, 3)] for k, (a, b) in shortcuts.items()},
        "cases": cases,
        "other_cases": other_cases,
        "check": check,
        "serve_memory": memory_by_size,
        "audit": audit,
        "compiled": compiled,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (RESULTS / "latest.md").write_text(table)
    plot(result, RESULTS / "latency.png")
    if args.readme:
        update_readme(table, result)
    shutil.rmtree(work, ignore_errors=True)
    print()
    print(table)
    print(f"bench: done in {result['elapsed_s']:.0f} s; results in {RESULTS}")
    failed = [name for name, _, _, ok in verdicts(result) if not ok]
    for name, target, got, ok in verdicts(result):
        print(f"  {'met' if ok else 'GAP'}  {name}: {got} (target {target})")
    if failed:
        print(f"bench: {len(failed)} target(s) not met")


if __name__ == "__main__":
    main()
