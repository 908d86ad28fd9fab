"""Handing freed memory back to the system (shell). glibc keeps in its heap what the process
frees (a registry rebuilt, a flood of connections cut off); ``malloc_trim`` gives it back."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def malloc_trim() -> Callable[[int], object] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        found: Callable[[int], object] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return found


_MALLOC_TRIM = malloc_trim()

# glibc's mallopt parameters, and the size from which a block is mapped on its own (so freeing
# it gives it back to the system at once): 1 MiB, fixed. glibc's default starts at 128 KiB but
# raises itself up to the largest block freed, after which the dictionaries of an old registry
# snapshot (megabytes each, four replaced a second under churn) stay in the heap. Not lower:
# uvloop reads each TLS record into a fresh buffer of 256 KiB (SSLObject.read(256 KiB), freed
# at once), and at a threshold of 256 KiB every read was an mmap, a munmap and two page faults,
# about 28 µs of the event loop's time per request (bench/README.md).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1024 * 1024
# Fixing the mapping threshold also stops glibc from raising the heap's trim threshold (128 KiB
# by default) with it: the free memory at the top of the heap is kept up to twice the mapping
# threshold, as glibc's own rule would keep it, and not shrunk and grown again between requests.


def map_big_blocks(threshold: int = MMAP_THRESHOLD) -> bool:
    """Have blocks of ``threshold`` bytes and more mapped on their own, and keep up to twice
    that free at the top of the heap; False where the C library cannot (no glibc)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(_M_TRIM_THRESHOLD, 2 * threshold)
    )


def trim() -> None:
    """Give freed memory back to the system, where the C library can (under 1 ms on the heap of
    a 100k-entry registry)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
