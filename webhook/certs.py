"""Certificates: issue a CA and a serving certificate with cryptography (shell).

What the server needs of a certificate it has (its files, the TLS context, its expiry) is in
``webhook.tls``, with the standard library alone; its names are here too.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.core import servicenames
from webhook.tls import CA_FILE, CA_KEY_FILE, CERT_FILE, KEY_FILE, CertificateError


@dataclass(frozen=True, slots=True)
class IssuedPair:
    cert_pem: bytes
    key_pem: bytes


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def service_dns_names(
    service: str, namespace: str, cluster_domain: str = "cluster.local"
) -> list[str]:
    """The names the API server may use to reach a webhook Service."""
    return servicenames.dns_names(service, namespace, cluster_domain)


def issue(
    *,
    dns_names: list[str],
    ip_addresses: list[str] | None = None,
    days: int = 365,
    ca_days: int = 3650,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    now: datetime.datetime | None = None,
) -> tuple[IssuedPair, IssuedPair]:
    """A CA (new unless given) and a leaf signed by it: ECDSA P-256, SHA-256.

    Returns (ca, leaf) as PEM pairs.
    """
    # Whole seconds, as a certificate holds them (so a leaf as long as its CA ends with it).
    moment = (now or datetime.datetime.now(datetime.UTC)).replace(microsecond=0)
    # Clocks of the API server and this pod may differ a little.
    not_before = moment - datetime.timedelta(minutes=5)
    if ca is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "seguard CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(moment + datetime.timedelta(days=ca_days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
    else:
        ca_cert, ca_key = ca
    leaf_end = moment + datetime.timedelta(days=days)
    if leaf_end > ca_cert.not_valid_after_utc:
        # A client stops trusting the leaf when its CA expires, whatever the leaf says.
        raise CertificateError(
            f"a certificate valid for {days} days would outlive its CA, which expires on "
            f"{ca_cert.not_valid_after_utc:%Y-%m-%d}; use fewer --days, or a CA that lasts longer"
        )
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses or []]
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns_names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(leaf_end)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pair = IssuedPair(ca_cert.public_bytes(serialization.Encoding.PEM), _key_pem(ca_key))
    leaf_pair = IssuedPair(leaf.public_bytes(serialization.Encoding.PEM), _key_pem(leaf_key))
    return ca_pair, leaf_pair


def _write(path: Path, data: bytes, mode: int) -> None:
    # Write beside, then rename: a reader (or the server's reload) never sees half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_pairs(
    out: Path, ca: IssuedPair, leaf: IssuedPair, *, keep_ca_key: bool = True
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / CA_FILE, out / CERT_FILE, out / KEY_FILE]
    _write(out / CA_FILE, ca.cert_pem, 0o644)
    if keep_ca_key:
        _write(out / CA_KEY_FILE, ca.key_pem, 0o600)
        written.append(out / CA_KEY_FILE)
    # The server presents the leaf and its issuer, so clients that trust the CA verify it.
    _write(out / KEY_FILE, leaf.key_pem, 0o600)
    _write(out / CERT_FILE, leaf.cert_pem, 0o644)
    return written


def load_ca(folder: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """The CA kept in a folder by an earlier ``generate`` (ca.crt and ca.key)."""
    try:
        cert = x509.load_pem_x509_certificate((folder / CA_FILE).read_bytes())
        key = serialization.load_pem_private_key((folder / CA_KEY_FILE).read_bytes(), password=None)
    except OSError as exc:
        raise CertificateError(f"cannot read the CA in {folder}: {exc.strerror}") from None
    except ValueError as exc:
        raise CertificateError(f"the CA in {folder} is not usable: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"the CA key in {folder} is not an ECDSA key")
    return cert, key


def ca_bundle_patch(ca_pem: bytes, *, name: str = "seguard") -> str:
    """A kustomize patch that puts ``ca_pem`` into both webhook configurations."""
    bundle = base64.b64encode(ca_pem).decode()
    documents = []
    for kind, hook in (
        ("MutatingWebhookConfiguration", "mutate.seguard.io"),
        ("ValidatingWebhookConfiguration", "validate.seguard.io"),
    ):
        documents.append(
            "apiVersion: admissionregistration.k8s.io/v1\n"
            f"kind: {kind}\n"
            f"metadata:\n  name: {name}\n"
            f"webhooks:\n- name: {hook}\n  clientConfig:\n    caBundle: {bundle}\n"
        )
    return "# Made by `seguard certs generate --ca-bundle-patch`.\n" + "---\n".join(documents)


def generate(
    out: Path,
    *,
    service: str = "seguard",
    namespace: str = "seguard-system",
    cluster_domain: str = "cluster.local",
    days: int = 365,
    ca_days: int = 3650,
    extra_dns: list[str] | None = None,
    ip_addresses: list[str] | None = None,
    ca_from: Path | None = None,
    bundle_patch: bool = False,
) -> list[Path]:
    """``seguard certs generate``: a CA (or the one in ``ca_from``) and a serving certificate
    for the webhook Service; with ``bundle_patch``, also the kustomize CA-bundle patch."""
    names = service_dns_names(service, namespace, cluster_domain) + list(extra_dns or [])
    ca = load_ca(ca_from) if ca_from is not None else None
    ca_pair, leaf = issue(
        dns_names=names, ip_addresses=ip_addresses, days=days, ca_days=ca_days, ca=ca
    )
    written = write_pairs(out, ca_pair, leaf)
    if bundle_patch:
        patch = out / "ca-bundle-patch.yaml"
        _write(patch, ca_bundle_patch(ca_pair.cert_pem).encode(), 0o644)
        written.append(patch)
    return written


def ensure_dev_certs(cert_dir: Path) -> bool:
    """Make development certificates for localhost when the folder has none. True if made."""
    if (cert_dir / CERT_FILE).exists() and (cert_dir / KEY_FILE).exists():
        return False
    ca, leaf = issue(
        dns_names=["localhost", *service_dns_names("seguard", "seguard-system")],
        ip_addresses=["127.0.0.1", "::1"],
    )
    write_pairs(cert_dir, ca, leaf)
    return True
