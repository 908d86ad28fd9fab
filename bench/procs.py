"""The benchmark's environment and processes: its virtualenv, wrk, ports, /proc readings."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import venv
from pathlib import Path
from typing import Any

from bench.settings import BENCH_VENV, ROOT, TARGET_GC_MS


def ensure_environment() -> None:
    """Re-run inside .venv-bench (made on first use) unless the project is importable here."""
    try:
        import matplotlib  # noqa: F401

        import webhook  # noqa: F401
    except ImportError:
        pass
    else:
        return
    if Path(sys.prefix).resolve() == BENCH_VENV.resolve():
        sys.exit("bench: the bench virtualenv lacks the project; delete .venv-bench and run again")
    python = BENCH_VENV / "bin" / "python"
    if not python.exists():
        print("bench: making .venv-bench with the project and matplotlib ...", flush=True)
        venv.create(BENCH_VENV, with_pip=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[bench]"], check=True
        )
    os.execv(str(python), [str(python), *sys.argv])


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("bench: installing wrk from Debian's packages ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True, capture_output=True)
        found = shutil.which("wrk")
        if found:
            return found
    sys.exit("bench: wrk is needed (Debian: apt-get install wrk)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(url: str, proc: subprocess.Popen[bytes], patience: float = 180.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < patience:
        if proc.poll() is not None:
            sys.exit(f"bench: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"bench: {url} never became ready")


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) of the process ``pid``, all its threads."""
    return _stat_cpu(Path(f"/proc/{pid}/stat"))


def loop_cpu_seconds(pid: int) -> float:
    """The CPU time of the process's main thread, which runs the event loop (uvicorn's
    protocols, the app, TLS): the server's own time, without the background threads."""
    return _stat_cpu(Path(f"/proc/{pid}/task/{pid}/stat"))


def _stat_cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def memory_mb(pid: int) -> tuple[float, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    values = {}
    for line in status.splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def idle_connection_kb(port: int, pid: int, cert_dir: Path, count: int = 1000) -> float:
    """The server's RSS per idle TLS connection: ``count`` connections made (each handshake
    done and held by the server, which the bound of --max-connections counts), then the RSS
    difference. The server keeps every one: the count is under its bound."""
    import ssl

    context = ssl.create_default_context(cafile=str(cert_dir / "ca.crt"))
    before = memory_mb(pid)[0]
    held = []
    try:
        for _ in range(count):
            raw = socket.create_connection(("127.0.0.1", port), timeout=10)
            held.append(context.wrap_socket(raw, server_hostname="localhost"))
        time.sleep(1.0)  # the last hand-overs to the HTTP protocol
        after = memory_mb(pid)[0]
    finally:
        for sock in held:
            sock.close()
    return (after - before) * 1024 / count


def gc_histogram(metrics_url: str) -> dict[str, float]:
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        text = response.read().decode()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("seguard_gc_pause_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets[bound] = float(line.rsplit(" ", 1)[1])
    return buckets


def longest_pause_ms(before: dict[str, float], after: dict[str, float]) -> tuple[float, int]:
    """The upper bound of the slowest bucket that grew, in ms, and how many pauses over 2 ms."""
    bounds = [b for b in before if b != "+Inf"]
    longest = 0.0
    previous = 0.0
    over = 0
    for bound in [*bounds, "+Inf"]:
        grew = (after.get(bound, 0.0) - before.get(bound, 0.0)) - previous
        previous = after.get(bound, 0.0) - before.get(bound, 0.0)
        if grew > 0:
            longest = float("inf") if bound == "+Inf" else float(bound) * 1000
            if bound == "+Inf" or float(bound) * 1000 > TARGET_GC_MS:
                over += int(grew)
    return longest, over


def wrk(
    wrk_path: str, url: str, script: Path, *, seconds: float, connections: int
) -> dict[str, Any]:
    result = subprocess.run(
        [
            wrk_path,
            "-t1",
            f"-c{connections}",
            f"-d{round(seconds)}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    summary: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    summary["rps"] = summary["requests"] / round(seconds)
    return summary
