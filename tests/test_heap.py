"""Handing memory back to the system: glibc's trim, and big blocks mapped on their own (the
bench's RSS under churn shows their effect: 131 MB without the fixed threshold, 125 with)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from webhook import heap

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")


@glibc
def test_the_c_librarys_trim_is_found_on_glibc() -> None:
    trim = heap.malloc_trim()  # the image (Debian's python:3.11-slim) has glibc
    assert trim is not None
    trim(0)


@glibc
def test_glibc_takes_a_fixed_threshold_for_mapped_blocks() -> None:
    assert heap.map_big_blocks() is True
    assert heap.map_big_blocks(heap.MMAP_THRESHOLD) is True


# What uvloop does for every TLS record it reads (sslproto.pyx, SSL_READ_MAX_SIZE): a read of
# up to 256 KiB into a fresh buffer, freed at once. Here the read finds no data, as the last one
# of each burst does, and the buffer is allocated and freed all the same.
TLS_READS = """
import resource, ssl, sys
from webhook import heap
heap.map_big_blocks(int(sys.argv[1]))
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
tls = context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
def read(times):
    for _ in range(times):
        try:
            tls.read(256 * 1024)
        except ssl.SSLWantReadError:
            pass
read(10)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
read(2000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults_of_tls_reads(threshold: int) -> int:
    done = subprocess.run(
        [sys.executable, "-c", TLS_READS, str(threshold)],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


@glibc
@pytest.mark.parametrize(
    ("threshold", "mapped"),
    [
        pytest.param(
            heap.MMAP_THRESHOLD, False, id="our-threshold-keeps-tls-read-buffers-in-the-heap"
        ),
        pytest.param(256 * 1024, True, id="a-256-kib-threshold-maps-every-tls-read"),
    ],
)
def test_a_tls_read_buffer_is_not_mapped_on_its_own(threshold: int, mapped: bool) -> None:
    # A mapped buffer costs an mmap, a munmap and page faults on every read (about 28 µs a
    # request at the server); one from the heap reuses the same memory: no fault at all.
    faults = _page_faults_of_tls_reads(threshold)
    if mapped:
        assert faults >= 2000
    else:
        assert faults < 200
