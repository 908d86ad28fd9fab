"""Handing memory back to the system: glibc's trim, and big blocks mapped on their own (the
bench's RSS under churn shows their effect: 131 MB without the fixed threshold, 125 with)."""

from __future__ import annotations

import platform

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
