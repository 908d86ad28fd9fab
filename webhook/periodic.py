"""A step run every few seconds in a thread of its own (shell).

The safe rollout, the scan and the istiod poller are all this: a step, a pause, and an expected
kind of failure that is logged once per distinct message while the loop goes on.
"""

from __future__ import annotations

import logging
import threading

from webhook import logs, supervise


class Periodic:
    def __init__(
        self,
        *,
        every: float,
        name: str,
        errors: tuple[type[Exception], ...],
        log: logging.Logger,
    ) -> None:
        self.every = every
        self.error = ""  # the last failure, "" while the step succeeds
        self._errors = errors
        self._log = log
        self._name = name
        self._stop = threading.Event()
        self._thread = supervise.thread(name, self._run, stop=self._stop)

    def step(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except self._errors as exc:
                if str(exc) != self.error:
                    self._log.error("%s", exc, extra=logs.fields("task.failed", task=self._name))
                self.error = str(exc)
            else:
                if self.error:
                    self._log.info(
                        "recovered: %s",
                        self.error,
                        extra=logs.fields("task.recovered", task=self._name),
                    )
                self.error = ""
            self._stop.wait(self.every)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)
