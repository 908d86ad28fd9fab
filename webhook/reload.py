"""Live reloads of the policy and of the serving certificate (shell).

Both files are polled: reading a small file every two seconds costs nothing, and a poll follows
a ConfigMap or Secret mount through kubelet's ``..data`` symlink swap, where inotify on the file
itself would watch the old target. A change is applied only once it parses; until then the last
good policy or certificate stays in force.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from webhook import logs, supervise, tls
from webhook.audit import policy_rejected_record, timestamp
from webhook.core.policyfile import PolicyError, parse_policy_text
from webhook.runtime import Runtime

log = logging.getLogger("seguard.reload")

# Kubelet refreshes mounted ConfigMaps and Secrets about once a minute; a 2 s poll adds little
# to that delay and reads a few kilobytes.
POLL_EVERY_S = 2.0


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()


class PolicyReloader:
    """Re-reads the policy file when its content changes."""

    def __init__(self, path: Path, runtime: Runtime) -> None:
        self.path = path
        self.runtime = runtime
        self._seen = runtime.policy.digest if runtime.policy else ""
        self._read_error = ""

    def check(self) -> bool:
        """Apply the file if it changed. True when a new policy went into force.

        A file that cannot be read (out of descriptors, a mount caught mid-swap) is not a
        policy refused: nothing new was read, so the one in force stays, and is still valid.
        The failure is counted each time and logged once until the file reads again."""
        try:
            text = self.path.read_bytes()
        except OSError as exc:
            self.runtime.metrics.policy_read_errors.inc()
            if str(exc) != self._read_error:
                self._read_error = str(exc)
                log.warning(
                    "cannot read the policy file %s (%s); generation %d stays in force",
                    self.path,
                    exc.strerror or exc,
                    self.runtime.policy_generation,
                    extra=logs.fields(
                        "policy.unreadable",
                        path=str(self.path),
                        generation=self.runtime.policy_generation,
                    ),
                )
            return False
        if self._read_error:
            self._read_error = ""
            log.info(
                "the policy file %s can be read again",
                self.path,
                extra=logs.fields("policy.readable", path=str(self.path)),
            )
        digest = hashlib.sha256(text).hexdigest()
        if digest == self._seen:
            return False
        self._seen = digest
        try:
            policy = parse_policy_text(text, source=str(self.path))
        except PolicyError as exc:
            return self._reject(digest, str(exc))
        current = self.runtime.policy
        if current is not None and policy.cluster_domain != current.cluster_domain:
            return self._reject(
                digest,
                f"{self.path}: spec.clusterDomain changed from {current.cluster_domain} to "
                f"{policy.cluster_domain}; every Service name depends on it, so restart seguard "
                "to apply it",
            )
        applied = self.runtime.set_policy(policy)
        log.info(
            "policy %s loaded: generation %d (sha256 %s)",
            self.path,
            applied.generation,
            digest[:12],
            extra=logs.fields(
                "policy.loaded", path=str(self.path), generation=applied.generation, sha256=digest
            ),
        )
        return True

    def _reject(self, digest: str, error: str) -> bool:
        self._seen = digest
        generation = self.runtime.policy_generation
        log.error(
            "policy reload refused, keeping generation %d: %s",
            generation,
            error,
            extra=logs.fields("policy.reload.refused", generation=generation, error=error),
        )
        self.runtime.reject_policy(error)
        self.runtime.audit.write(
            policy_rejected_record(
                str(self.path), error, policy_generation=generation, at=timestamp()
            )
        )
        return False


class CertificateReloader:
    """Loads a new tls.crt and tls.key into the live TLS context when they change.

    ``load_cert_chain`` on the live context affects new handshakes only: established and
    kept-alive connections go on with the certificate they negotiated. The new pair is first
    loaded into a scratch context, so a half-written or mismatched pair is never put in force.
    """

    def __init__(
        self,
        cert_dir: Path,
        context: ssl.SSLContext,
        *,
        on_error: Callable[[], None] | None = None,
        on_loaded: Callable[[float], None] | None = None,
    ) -> None:
        self.cert_dir = cert_dir
        self.context = context
        self._on_error = on_error
        self._on_loaded = on_loaded
        self._seen = self._read_digest()
        self._reported = ""
        self._note_expiry()

    def _read(self) -> tuple[bytes, bytes]:
        return (self.cert_dir / tls.CERT_FILE).read_bytes(), (
            self.cert_dir / tls.KEY_FILE
        ).read_bytes()

    def _read_digest(self) -> str:
        try:
            return _digest(*self._read())
        except OSError:
            return ""

    def _note_expiry(self) -> None:
        if self._on_loaded is None:
            return
        try:
            expires = tls.not_valid_after((self.cert_dir / tls.CERT_FILE).read_bytes())
        except (OSError, tls.CertificateError):
            return
        self._on_loaded(expires.timestamp())

    def check(self) -> bool:
        """Load the pair if it changed and is usable. True when a new pair went into force."""
        digest = self._read_digest()
        if not digest or digest == self._seen:
            return False
        scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            tls.load_pair(scratch, self.cert_dir)
        except tls.CertificateError as exc:
            # Often a rotation caught between writing the certificate and the key: keep the
            # old pair and look again at the next poll.
            if str(exc) != self._reported:
                self._reported = str(exc)
                log.error(
                    "new certificate not loaded, keeping the old one: %s",
                    exc,
                    extra=logs.fields("certificate.reload.refused", directory=str(self.cert_dir)),
                )
                if self._on_error is not None:
                    self._on_error()
            return False
        tls.load_pair(self.context, self.cert_dir)
        self._seen = digest
        self._reported = ""
        self._note_expiry()
        log.info(
            "serving certificate reloaded from %s",
            self.cert_dir,
            extra=logs.fields("certificate.reloaded", directory=str(self.cert_dir)),
        )
        return True


async def poll(
    checks: Mapping[str, Callable[[], object]],
    *,
    every: float = POLL_EVERY_S,
    health: supervise.Health | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run each check every ``every`` seconds, on the event loop (never racing a handshake).

    A check that raises is supervised as a background thread is (``webhook.supervise``): its
    error is logged with the traceback once, counted under its name in
    ``seguard_thread_failures_total``, and three failures in a row take readiness down until
    it has run well for a minute. It is tried again at the next poll: a reload bug never stops
    the server or the other reloads."""
    record = health if health is not None else supervise.HEALTH
    logged: dict[str, str] = {}
    while True:
        await asyncio.sleep(every)
        for name, check in checks.items():
            try:
                check()
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                state = record.crashed(name, error, healthy_run=False)
                record.restarted(name, clock())
                fields = logs.fields("thread.failed", thread=name, crashes=state.crashes)
                if logged.get(name) != error:
                    logged[name] = error
                    log.exception("reload check %s failed", name, extra=fields)
                else:
                    log.error("reload check %s failed again: %s", name, error, extra=fields)
            else:
                if name in logged:
                    del logged[name]
                    record.recovered(name)
