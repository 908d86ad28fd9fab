"""The serving certificate as the server reads it, with the standard library alone."""

from __future__ import annotations

import base64
import datetime
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from hypothesis import given, settings
from hypothesis import strategies as st

from webhook import certs, reload, tls

UTC = datetime.UTC


def _leaf_pem(now: datetime.datetime, days: int) -> bytes:
    _, leaf = certs.issue(dns_names=["localhost"], now=now, days=days, ca_days=days + 1)
    return leaf.cert_pem


@pytest.mark.parametrize(
    ("now", "days"),
    [
        (datetime.datetime(2026, 12, 3, 18, 0, 7, tzinfo=UTC), 365),  # UTCTime, 20YY
        (datetime.datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC), 1),  # GeneralizedTime from 2050
        (datetime.datetime(2099, 6, 1, tzinfo=UTC), 10),
        (datetime.datetime(1990, 1, 1, tzinfo=UTC), 30),  # UTCTime, 19YY
    ],
)
def test_the_expiry_is_the_one_cryptography_reads(now: datetime.datetime, days: int) -> None:
    pem = _leaf_pem(now, days)
    expected = x509.load_pem_x509_certificate(pem).not_valid_after_utc
    assert tls.not_valid_after(pem) == expected
    assert expected == now.replace(microsecond=0) + datetime.timedelta(days=days)


def test_a_chain_gives_its_first_certificate_s_expiry() -> None:
    ca, leaf = certs.issue(dns_names=["localhost"], days=30, ca_days=3650)
    chain = leaf.cert_pem + ca.cert_pem
    assert (
        tls.not_valid_after(chain)
        == x509.load_pem_x509_certificate(leaf.cert_pem).not_valid_after_utc
    )
    assert tls.not_valid_after(ca.cert_pem + leaf.cert_pem) == (
        x509.load_pem_x509_certificate(ca.cert_pem).not_valid_after_utc
    )


def _pem(der: bytes) -> bytes:
    body = base64.encodebytes(der)
    return b"-----BEGIN CERTIFICATE-----\n" + body + b"-----END CERTIFICATE-----\n"


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b"not a certificate",
        _leaf_pem(datetime.datetime(2026, 1, 1, tzinfo=UTC), 1).replace(
            b"CERTIFICATE", b"PUBLIC KEY"
        ),
        _pem(b""),
        _pem(b"\x30\x03\x02\x01\x01"),  # a sequence holding one integer
        _pem(b"\x30\x84\xff\xff\xff\xff"),  # a length far past the end
    ],
)
def test_what_is_not_a_certificate_is_a_certificate_error(text: bytes) -> None:
    with pytest.raises(tls.CertificateError):
        tls.not_valid_after(text)


def test_a_truncated_certificate_is_a_certificate_error() -> None:
    der = x509.load_pem_x509_certificate(
        _leaf_pem(datetime.datetime(2026, 1, 1, tzinfo=UTC), 1)
    ).public_bytes(serialization.Encoding.DER)
    # Cut inside the validity: past the issuer, before the notAfter's last byte.
    for cut in (1, 10, 60, 150):
        with pytest.raises(tls.CertificateError):
            tls.not_valid_after(_pem(der[:cut]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_read_as_a_date_or_a_certificate_error(der: bytes) -> None:
    try:
        found = tls.not_valid_after(_pem(der))
    except tls.CertificateError:
        return
    assert found.tzinfo is UTC


def test_the_reloader_reports_the_expiry_of_the_pair_in_force(tmp_path: Path) -> None:
    first_ca, first = certs.issue(dns_names=["localhost"], days=30)
    certs.write_pairs(tmp_path, first_ca, first)
    seen: list[float] = []
    context = tls.server_context(tmp_path)
    reloader = reload.CertificateReloader(tmp_path, context, on_loaded=seen.append)
    assert seen == [x509.load_pem_x509_certificate(first.cert_pem).not_valid_after_utc.timestamp()]
    ca, second = certs.issue(dns_names=["localhost"], days=90)
    certs.write_pairs(tmp_path, ca, second)
    assert reloader.check()
    assert (
        seen[-1] == x509.load_pem_x509_certificate(second.cert_pem).not_valid_after_utc.timestamp()
    )
    assert seen[-1] - seen[0] == pytest.approx(60 * 86400, abs=120)


SERVE_IMPORTS = """
import sys
import webhook.cli, webhook.serve
print("cryptography" in sys.modules)
"""


def test_serving_does_not_import_cryptography() -> None:
    # It costs the server about 8 MB of RSS; only issuing certificates needs it.
    result = subprocess.run(
        [sys.executable, "-c", SERVE_IMPORTS], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["False"]


_REAL_DER = x509.load_pem_x509_certificate(
    _leaf_pem(datetime.datetime(2026, 1, 1, tzinfo=UTC), 1)
).public_bytes(serialization.Encoding.DER)


@settings(max_examples=500, deadline=None)
@given(st.integers(0, len(_REAL_DER) - 1), st.integers(0, 255))
def test_a_certificate_with_any_byte_changed_reads_or_is_a_certificate_error(
    at: int, value: int
) -> None:
    der = bytearray(_REAL_DER)
    der[at] = value
    try:
        found = tls.not_valid_after(_pem(bytes(der)))
    except tls.CertificateError:
        return
    assert found.tzinfo is UTC
