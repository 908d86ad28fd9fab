"""The cluster side of the benchmark: the fake API server the tests use, holding a registry of
a given size, and a stream of changes to it."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from bench.settings import ROOT


def api_server(entries: int) -> Any:
    """A small API server (the tests' fake) holding a registry of ``entries`` objects."""
    sys.path.insert(0, str(ROOT))
    from bench.workload import registry_objects
    from tests.fakeapi import Cluster, FakeApiServer

    cluster = Cluster()
    for obj in registry_objects(entries):
        meta = obj["metadata"]
        cluster.objects[obj["kind"]][(meta.get("namespace", ""), meta["name"])] = obj
    server = FakeApiServer(cluster)
    server.start()
    return server


@contextlib.contextmanager
def churning(cluster: Any, per_s: int) -> Iterator[Callable[[], float]]:
    """Change ``per_s`` ServiceEntries a second in the API server (each a new host on an
    existing entry, streamed to the server's watch) while the block runs; yields a function
    giving the rate reached."""
    from tests.factories import make_service_entry

    stop = threading.Event()
    done = [0]
    started = time.monotonic()

    def run() -> None:
        n = 0
        while not stop.is_set():
            tick = time.monotonic()
            for _ in range(per_s // 10):
                n += 1
                cluster.cluster.put(
                    make_service_entry(
                        f"churn-{n % 500}", "bench-churn", [f"churn-{n}.example.net"]
                    )
                )
                done[0] += 1
            stop.wait(max(0.0, 0.1 - (time.monotonic() - tick)))

    thread = threading.Thread(target=run, name="churn", daemon=True)
    thread.start()
    try:
        yield lambda: done[0] / (time.monotonic() - started)
    finally:
        stop.set()
        thread.join(10)
