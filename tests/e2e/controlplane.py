"""A real control plane for end-to-end tests, after controller-runtime's envtest.

``KUBEBUILDER_ASSETS`` names a folder holding ``etcd`` and ``kube-apiserver``; ``kubectl`` comes
from PATH. Everything runs on loopback in a temporary folder: etcd, the API server (client
certificate authentication for an admin in system:masters), the ServiceEntry CRD with its CEL
rules, ``seguard serve`` following the API server, and both webhook configurations registered
with ``url:`` client configs and the CA bundle.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webhook import certs, tls

CRD = Path(__file__).resolve().parent.parent / "data" / "istio-serviceentry-crd.yaml"
# How long to wait for a process to come up; a liveness bound, not a speed target.
START_PATIENCE_S = 60.0
# How long a restarted API server may take to stop by itself before it is killed.
APISERVER_GRACE_S = 10.0


def until(what: str, check: Callable[[], Any], *, patience_s: float, every_s: float = 0.2) -> Any:
    """``check()`` once it gives something true, retried for ``patience_s`` (liveness only: how
    long to keep trying something that must happen)."""
    started = time.monotonic()
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() - started < patience_s, f"never: {what}"
        time.sleep(every_s)


def missing_binaries() -> str | None:
    """Why the e2e suite cannot run here, or None when it can."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if not assets:
        return (
            "KUBEBUILDER_ASSETS is not set (it should name a folder with etcd and kube-apiserver)"
        )
    for binary in ("etcd", "kube-apiserver"):
        if not (Path(assets) / binary).is_file():
            return f"KUBEBUILDER_ASSETS={assets} has no {binary}"
    if shutil.which("kubectl") is None:
        return "kubectl is not on PATH"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _client_cert(
    ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> tuple[bytes, bytes]:
    """An admin client certificate: CN=seguard-e2e, O=system:masters."""
    import datetime

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "seguard-e2e"),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def local_opener(context: ssl.SSLContext | None = None) -> urllib.request.OpenerDirector:
    """urllib without proxies: everything here is on loopback, and an http_proxy set in CI would
    otherwise take these requests (urllib, unlike Go, does not leave 127.0.0.1 alone)."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


@dataclass
class ControlPlane:
    root: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api_port: int = 0
    etcd_port: int = 0
    webhook_port: int = 0
    ops_port: int = 0
    kubeconfig: Path = Path()
    ca_pem: bytes = b""
    webhook_proc: subprocess.Popen[bytes] | None = None
    webhook_ca: bytes = b""
    policy: Path | None = None
    audit_file: Path = Path()
    version: str = ""

    # --- processes ------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        # Appended, so a restart keeps the log from before it; the child keeps its own copy of
        # the descriptor, ours is closed at once.
        with (self.root / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        self.processes.append(proc)
        return proc

    def _wait_healthy(self, url: str, context: ssl.SSLContext | None, what: str) -> None:
        deadline = time.monotonic() + START_PATIENCE_S
        last = ""
        while time.monotonic() < deadline:
            try:
                with local_opener(context).open(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except Exception as exc:  # not up yet
                last = str(exc)
            time.sleep(0.2)
        raise RuntimeError(f"{what} did not become healthy at {url}: {last}; see {self.root}")

    def start(self) -> None:
        assets = Path(os.environ["KUBEBUILDER_ASSETS"])
        pki = self.root / "pki"
        pki.mkdir()
        ca_pair, serving = certs.issue(dns_names=["localhost"], ip_addresses=["127.0.0.1"])
        ca_cert = x509.load_pem_x509_certificate(ca_pair.cert_pem)
        ca_key = serialization.load_pem_private_key(ca_pair.key_pem, password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        self.ca_pem = ca_pair.cert_pem
        certs.write_pairs(pki, ca_pair, serving)  # ca.crt, tls.crt, tls.key: the API server's
        client_cert, client_key = _client_cert(ca_cert, ca_key)
        sa_key = ec.generate_private_key(ec.SECP256R1())
        (pki / "sa.key").write_bytes(
            sa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (pki / "sa.pub").write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )

        self.etcd_port = free_port()
        etcd = str(assets / "etcd")
        help_text = subprocess.run([etcd, "--help"], capture_output=True, text=True, check=False)
        etcd_args = [
            etcd,
            f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{free_port()}",
        ]
        if "unsafe-no-fsync" in help_text.stdout + help_text.stderr:
            etcd_args.append("--unsafe-no-fsync=true")
        self._spawn("etcd", etcd_args)
        self._wait_healthy(f"http://127.0.0.1:{self.etcd_port}/health", None, "etcd")

        self.api_port = free_port()
        self._start_apiserver(assets, pki)
        self.kubeconfig = self.root / "kubeconfig"
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {
                            "name": "e2e",
                            "cluster": {
                                "server": f"https://127.0.0.1:{self.api_port}",
                                "certificate-authority-data": base64.b64encode(
                                    self.ca_pem
                                ).decode(),
                            },
                        }
                    ],
                    "users": [
                        {
                            "name": "admin",
                            "user": {
                                "client-certificate-data": base64.b64encode(client_cert).decode(),
                                "client-key-data": base64.b64encode(client_key).decode(),
                            },
                        }
                    ],
                    "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}],
                    "current-context": "e2e",
                }
            )
        )
        self.version = self.kubectl("version", "-o", "json").stdout
        self.kubectl("apply", "-f", str(CRD))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/serviceentries.networking.istio.io",
        )

    def _start_apiserver(self, assets: Path, pki: Path) -> None:
        argv = [
            str(assets / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--secure-port={self.api_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--cert-dir={self.root / 'apiserver'}",
            f"--tls-cert-file={pki / 'tls.crt'}",
            f"--tls-private-key-file={pki / 'tls.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--authorization-mode=RBAC",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--disable-admission-plugins=ServiceAccount",
            f"--service-account-issuer=https://127.0.0.1:{self.api_port}/",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
        ]
        self._spawn("kube-apiserver", argv)
        context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        # /readyz (anonymous, like /livez) also waits for the informers and etcd.
        self._wait_healthy(f"https://127.0.0.1:{self.api_port}/readyz", context, "kube-apiserver")

    def restart_apiserver(self) -> None:
        proc = next(p for p in self.processes if "kube-apiserver" in str(p.args))
        # kube-apiserver v1.36 with watches open does not exit within 30 s of a SIGTERM; a
        # restart only needs the process gone, so it is killed after a short grace period.
        end_process(proc, grace_s=APISERVER_GRACE_S)
        self.processes.remove(proc)
        self._start_apiserver(Path(os.environ["KUBEBUILDER_ASSETS"]), self.root / "pki")

    def kubectl(
        self, *argv: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(argv)} failed: {result.stderr}")
        return result

    def apply(
        self, manifest: dict[str, Any], *extra: str, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        return self.kubectl("apply", "-f", "-", *extra, stdin=yaml.safe_dump(manifest), check=check)

    # --- the webhook ----------------------------------------------------------------------

    def start_webhook(
        self, *, policy: Path | None = None, keep: bool = False, from_cluster: bool = False
    ) -> None:
        """Start `seguard serve`; with ``keep``, again on the same ports and certificates; with
        ``from_cluster``, reading the ServiceEntryPolicy resource instead of a policy file."""
        cert_dir = self.root / "webhook-certs"
        if not keep:
            ca_pair, serving = certs.issue(dns_names=["localhost"], ip_addresses=["127.0.0.1"])
            certs.write_pairs(cert_dir, ca_pair, serving)
            self.webhook_ca = ca_pair.cert_pem
            self.webhook_port = free_port()
            self.ops_port = free_port()
            self.policy = policy
        policy = self.policy
        self.audit_file = self.root / "audit.log"
        argv = [
            sys.executable, "-m", "webhook.cli", "serve",
            "--kubeconfig", str(self.kubeconfig),
            "--cert-dir", str(cert_dir),
            "--host", "127.0.0.1",
            "--port", str(self.webhook_port),
            "--metrics-port", str(self.ops_port),
            "--audit-file", str(self.audit_file),
            "--lease-namespace", "default",  # the scan's Lease: a namespace that exists here
        ]  # fmt: skip
        if policy is not None and not from_cluster:
            argv += ["--policy", str(policy)]
        self.webhook_proc = self._spawn("seguard", argv)
        self._wait_healthy(f"http://127.0.0.1:{self.ops_port}/readyz", None, "seguard serve")

    def kill_webhook(self) -> None:
        """SIGKILL, as an OOM kill or a node failure would."""
        assert self.webhook_proc is not None
        self.webhook_proc.kill()
        self.webhook_proc.wait(30)
        self.processes.remove(self.webhook_proc)

    def rotate_webhook_certificate(self) -> None:
        """A new serving certificate from the same CA, written in place as a Secret update is."""
        cert_dir = self.root / "webhook-certs"
        ca = certs.load_ca(cert_dir)
        _, leaf = certs.issue(dns_names=["localhost"], ip_addresses=["127.0.0.1"], ca=ca)
        (cert_dir / tls.KEY_FILE).write_bytes(leaf.key_pem)
        (cert_dir / tls.CERT_FILE).write_bytes(leaf.cert_pem)

    def register_webhooks(self) -> None:
        bundle = base64.b64encode(self.webhook_ca).decode()
        rule = {
            "apiGroups": ["networking.istio.io"],
            "apiVersions": ["v1", "v1beta1", "v1alpha3"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["serviceentries"],
            "scope": "Namespaced",
        }

        def hook(name: str, path: str) -> dict[str, Any]:
            return {
                "name": name,
                "clientConfig": {
                    "url": f"https://127.0.0.1:{self.webhook_port}{path}",
                    "caBundle": bundle,
                },
                "rules": [rule],
                "matchPolicy": "Equivalent",
                "sideEffects": "NoneOnDryRun",
                "admissionReviewVersions": ["v1"],
                "timeoutSeconds": 5,
                "failurePolicy": "Fail",
            }

        mutating = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "seguard"},
            "webhooks": [
                {**hook("mutate.seguard.io", "/mutate"), "reinvocationPolicy": "IfNeeded"}
            ],
        }
        validating = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "seguard"},
            "webhooks": [hook("validate.seguard.io", "/validate")],
        }
        self.apply(mutating, check=True)
        self.apply(validating, check=True)
        # The API server picks webhook configurations up from an informer: wait until a request
        # that must be denied is denied by us.
        probe = {
            "apiVersion": "networking.istio.io/v1",
            "kind": "ServiceEntry",
            "metadata": {"name": "probe", "namespace": "default"},
            "spec": {"hosts": ["*.com"]},
        }
        deadline = time.monotonic() + START_PATIENCE_S
        while time.monotonic() < deadline:
            result = self.apply(probe, "--dry-run=server")
            if "WildcardTooBroad" in result.stderr:
                return
            time.sleep(0.2)
        raise RuntimeError("the webhooks never started judging requests")

    def stop(self) -> None:
        for proc in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in reversed(self.processes):
            end_process(proc, grace_s=15.0)


def end_process(proc: subprocess.Popen[bytes], *, grace_s: float) -> None:
    """SIGTERM (sent already or now), then SIGKILL if it is still there after ``grace_s``;
    returns once the process is gone, so its ports and files are free."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def loopback_webhooks(
    rendered: list[dict[str, Any]], *, base_url: str, ca_pem: bytes, name: str
) -> list[dict[str, Any]]:
    """The webhook configurations of a ``deploy/`` rendering, as they would be installed, but
    named ``name`` and calling ``base_url`` (a `seguard serve` on loopback) instead of the
    in-cluster Service: everything else (rules, selectors, policies, timeouts) is kept."""
    configs = []
    bundle = base64.b64encode(ca_pem).decode()
    for obj in rendered:
        if obj.get("kind") not in WEBHOOK_KINDS:
            continue
        config = copy.deepcopy(obj)
        config["metadata"] = {"name": name}
        for hook in config["webhooks"]:
            path = hook["clientConfig"]["service"].get("path", "/")
            hook["clientConfig"] = {"url": f"{base_url}{path}", "caBundle": bundle}
        configs.append(config)
    return configs


def render_deploy(overlay: str = "base") -> list[dict[str, Any]]:
    """``kubectl kustomize deploy/<overlay>``, as objects."""
    root = Path(__file__).resolve().parent.parent.parent / "deploy"
    path = root / ("base" if overlay == "base" else f"overlays/{overlay}")
    result = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True, timeout=60
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@contextlib.contextmanager
def control_plane(root: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(root)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
