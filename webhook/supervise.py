"""Background threads that never die silently (shell).

Every background thread (the registry publisher, the watchers, the scanner, the rollout, the
istiod poller, the events sender, the audit writer) runs its loop under ``thread``: an error its
loop did not foresee is logged with its traceback (once per distinct error), counted by thread,
and the loop is started again after a backoff. A thread that keeps failing takes readiness down
(``Health.failing``), with the error as the reason in ``/readyz``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from webhook import logs
from webhook.backoff import Backoff

log = logging.getLogger("seguard.supervise")

# The first restart after 1 s, doubling to a minute: a loop that breaks at once on every start
# costs a line and a restart a minute, not a busy core.
RESTART_START_S = 1.0
RESTART_MAX_S = 60.0
# A loop that ran this long before it failed was healthy: its next restart waits the least, and
# it does not count towards failing.
HEALTHY_RUN_S = 60.0
# Failures in a row, each within HEALTHY_RUN_S of its start, after which the thread cannot run.
FAILING_AFTER = 3


@dataclass
class ThreadHealth:
    crashes: int = 0
    in_a_row: int = 0
    error: str = ""
    started: float = 0.0  # when its loop was last (re)started (the supervisor's clock)


@dataclass
class Health:
    """What the supervised threads of a process have been through, by thread name."""

    threads: dict[str, ThreadHealth] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def crashed(self, name: str, error: str, *, healthy_run: bool) -> ThreadHealth:
        with self.lock:
            health = self.threads.setdefault(name, ThreadHealth())
            health.crashes += 1
            health.in_a_row = 1 if healthy_run else health.in_a_row + 1
            health.error = error
            return health

    def recovered(self, name: str) -> None:
        """A step that failed has just run well: it no longer counts towards failing."""
        with self.lock:
            health = self.threads.get(name)
            if health is not None:
                health.in_a_row = 0

    def restarted(self, name: str, now: float) -> None:
        with self.lock:
            health = self.threads.get(name)
            if health is not None:
                health.started = now

    def failing(self, now: float) -> dict[str, str]:
        """The threads that cannot run, with why: failed FAILING_AFTER times in a row, and not
        yet running well (HEALTHY_RUN_S) since the last restart."""
        with self.lock:
            return {
                name: f"{h.error} ({h.in_a_row} failures in a row)"
                for name, h in self.threads.items()
                if h.in_a_row >= FAILING_AFTER and now - h.started < HEALTHY_RUN_S
            }

    def crash_counts(self) -> dict[str, int]:
        with self.lock:
            return {name: h.crashes for name, h in self.threads.items()}


# The process's threads: one process, one set of threads (as threading.enumerate() has it).
HEALTH = Health()


def thread(
    name: str,
    loop: Callable[[], None],
    *,
    stop: threading.Event | None = None,
    health: Health | None = None,
    backoff: Backoff | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> threading.Thread:
    """A daemon thread running ``loop`` until it returns (or ``stop`` is set), starting it again
    after an unforeseen error. ``loop`` must be safe to start again."""
    record = health if health is not None else HEALTH
    restarts = backoff or Backoff(RESTART_START_S, RESTART_MAX_S)
    stopped = stop or threading.Event()

    def run() -> None:
        logged = ""
        while not stopped.is_set():
            started = clock()
            try:
                loop()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                healthy_run = clock() - started >= HEALTHY_RUN_S
                if healthy_run:
                    restarts.reset()
                state = record.crashed(name, error, healthy_run=healthy_run)
                wait = restarts.next()
                if error != logged:
                    logged = error
                    log.exception(
                        "thread %s failed (%d so far); starting it again in %.1f s",
                        name,
                        state.crashes,
                        wait,
                        extra=logs.fields(
                            "thread.failed", thread=name, crashes=state.crashes, retry_in_s=wait
                        ),
                    )
                else:
                    log.error(
                        "thread %s failed again: %s; starting it again in %.1f s",
                        name,
                        error,
                        wait,
                        extra=logs.fields(
                            "thread.failed",
                            thread=name,
                            crashes=state.crashes,
                            retry_in_s=wait,
                            error=error,
                        ),
                    )
                stopped.wait(wait)
                record.restarted(name, clock())
                continue
            return  # the loop ended by itself: it was told to stop

    return threading.Thread(target=run, name=name, daemon=True)
