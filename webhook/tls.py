"""The serving certificate as the server uses it: its files, the TLS context, and when it expires
(shell, standard library only).

``seguard serve`` needs no more of a certificate than this; issuing one (``webhook.certs``) takes
the cryptography package, whose import costs the server about 8 MB of RSS, so the server loads
it only to make development certificates.

File names follow cert-manager and ``kubernetes.io/tls`` Secrets (``tls.crt``, ``tls.key``,
``ca.crt``), so a mounted Secret works as it is.
"""

from __future__ import annotations

import base64
import datetime
import re
import ssl
from pathlib import Path

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
CA_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
# Modern AEAD suites for TLS 1.2; TLS 1.3 suites are fixed by OpenSSL and all modern.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class CertificateError(ValueError):
    """Certificate material that is missing or cannot be used."""


def server_context(cert_dir: Path, *, client_ca: Path | None = None) -> ssl.SSLContext:
    """TLS 1.2 or higher with modern suites; loads tls.crt and tls.key from ``cert_dir``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    load_pair(context, cert_dir)
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except (OSError, ssl.SSLError) as exc:
            raise CertificateError(f"cannot load client CA {client_ca}: {exc}") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def load_pair(context: ssl.SSLContext, cert_dir: Path) -> None:
    cert, key = cert_dir / CERT_FILE, cert_dir / KEY_FILE
    for path in (cert, key):
        if not path.exists():
            raise CertificateError(
                f"{path} does not exist; run `seguard certs generate --out {cert_dir}`"
            )
    try:
        context.load_cert_chain(certfile=str(cert), keyfile=str(key))
    except (OSError, ssl.SSLError) as exc:
        raise CertificateError(f"cannot load {cert} and {key}: {exc}") from None


_PEM_BLOCK = re.compile(
    rb"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----"
)
_SEQUENCE, _VERSION, _UTC_TIME, _GENERALIZED_TIME = 0x30, 0xA0, 0x17, 0x18


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at ``at``: (tag, where its content starts, where it ends)."""
    if at + 2 > len(der):
        raise ValueError("truncated")
    tag, length, start = der[at], der[at + 1], at + 2
    if length & 0x80:  # long form: the next (length & 0x7F) bytes hold the length
        count = length & 0x7F
        if not 1 <= count <= 4 or start + count > len(der):
            raise ValueError("bad length")
        length = int.from_bytes(der[start : start + count], "big")
        start += count
    if start + length > len(der):
        raise ValueError("truncated")
    return tag, start, start + length


def _time(tag: int, text: bytes) -> datetime.datetime:
    # RFC 5280 4.1.2.5: UTCTime YYMMDDHHMMSSZ (YY below 50 is 20YY), GeneralizedTime
    # YYYYMMDDHHMMSSZ; both in UTC with whole seconds.
    value = text.decode("ascii")
    if tag == _UTC_TIME and len(value) == 13 and value.endswith("Z"):
        moment = datetime.datetime.strptime(value, "%y%m%d%H%M%SZ")
        century = 1900 if moment.year % 100 >= 50 else 2000
        moment = moment.replace(year=century + moment.year % 100)
    elif tag == _GENERALIZED_TIME and len(value) == 15 and value.endswith("Z"):
        moment = datetime.datetime.strptime(value, "%Y%m%d%H%M%SZ")
    else:
        raise ValueError(f"not a certificate time: {value!r}")
    return moment.replace(tzinfo=datetime.UTC)


def not_valid_after(pem: bytes) -> datetime.datetime:
    """When the first certificate of a PEM file (the leaf of a chain) stops being valid.

    Read from its DER: Certificate, tbsCertificate, then past the optional version, the serial
    number, the signature algorithm and the issuer, the validity's second time. The TLS
    context, not this, is what checks a certificate; this only reads the date for the expiry
    metric. Raises CertificateError when there is no certificate to read."""
    block = _PEM_BLOCK.search(pem)
    if block is None:
        raise CertificateError("no PEM certificate found")
    try:
        der = base64.b64decode(b"".join(block.group(1).split()), validate=True)
        tag, start, _ = _element(der, 0)
        if tag != _SEQUENCE:
            raise ValueError("not a certificate")
        tag, at, end = _element(der, start)  # tbsCertificate
        if tag != _SEQUENCE:
            raise ValueError("no tbsCertificate")
        tag, _, after = _element(der, at)
        if tag == _VERSION:
            at = after
        for _skipped in ("serialNumber", "signature", "issuer"):
            at = _element(der, at)[2]
        tag, at, validity_end = _element(der, at)
        if tag != _SEQUENCE or validity_end > end:
            raise ValueError("no validity")
        at = _element(der, at)[2]  # notBefore
        tag, start, stop = _element(der, at)
        if stop > validity_end:
            raise ValueError("no notAfter")
        return _time(tag, der[start:stop])
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise CertificateError(f"not a readable certificate: {exc}") from None
