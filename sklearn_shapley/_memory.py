"""Refusing, with a message that says what to do, an array that would not fit in memory."""

from __future__ import annotations

import os

import numpy as np


def available_memory_bytes():
    """Bytes of memory the system says are available (a generous guess if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**40


ROWS_ADVICE = (
    "explain fewer rows at a time (e.g. in chunks), or for interactions of order >= 3 "
    "use the sparse result (dense=False)."
)


def check_fits_in_memory(shape, what, itemsize=8, fraction=0.8, advice=ROWS_ADVICE):
    """Raise ``MemoryError`` naming the size before allocating an array of ``shape``;
    ``advice`` ends the message with what to do instead."""
    n_bytes = int(np.prod(np.asarray(shape, dtype=np.float64))) * itemsize
    available = available_memory_bytes()
    if n_bytes > fraction * available:
        raise MemoryError(
            f"{what} of shape {tuple(int(s) for s in shape)} needs "
            f"{n_bytes / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB of memory "
            f"is available; {advice}"
        )
