"""Refusing, with a message that says what to do, an array that would not fit in memory.

The memory an allocation may use is the smallest of what the host has available, what
the process's cgroup (v2 ``memory.max``, v1 ``memory.limit_in_bytes``) leaves, and what
its address-space limit (``RLIMIT_AS``) leaves: inside a container or under
``ulimit -v`` the host's free memory overstates it.
"""

from __future__ import annotations

import os

import numpy as np

#: cgroup limits at least this large mean "no limit" (v1 writes 2**63 rounded down).
_NO_LIMIT = 2**60


def _read_text(path):
    """The stripped contents of a (pseudo-)file, or ``None`` if it cannot be read."""
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _read_int(path):
    text = _read_text(path)
    try:
        return int(text)
    except (TypeError, ValueError):  # missing, or "max" (no limit)
        return None


def host_available_bytes():
    """Bytes of memory the host says are available, or ``None`` if unknown."""
    meminfo = _read_text("/proc/meminfo")
    for line in (meminfo or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_dirs():
    """The cgroup directories that may limit this process: ``(version, path)``."""
    dirs = [(2, "/sys/fs/cgroup"), (1, "/sys/fs/cgroup/memory")]
    for line in (_read_text("/proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or parts[2] in ("", "/"):
            continue
        if parts[0] == "0":
            dirs.append((2, "/sys/fs/cgroup" + parts[2]))
        elif "memory" in parts[1].split(","):
            dirs.append((1, "/sys/fs/cgroup/memory" + parts[2]))
    return dirs


def cgroup_available_bytes():
    """Bytes the tightest cgroup memory limit leaves (limit − usage), or ``None``."""
    left = []
    for version, path in _cgroup_dirs():
        limit_file, usage_file = (
            ("memory.max", "memory.current")
            if version == 2
            else ("memory.limit_in_bytes", "memory.usage_in_bytes")
        )
        limit = _read_int(os.path.join(path, limit_file))
        if limit is None or limit >= _NO_LIMIT:
            continue
        usage = _read_int(os.path.join(path, usage_file)) or 0
        left.append(max(limit - usage, 0))
    return min(left) if left else None


def address_space_available_bytes():
    """Bytes the soft ``RLIMIT_AS`` leaves above the process's current size, or
    ``None`` when there is no such limit."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft < 0:
        return None
    used = 0
    for line in (_read_text("/proc/self/status") or "").splitlines():
        if line.startswith("VmSize:"):
            used = int(line.split()[1]) * 1024
    return max(soft - used, 0)


def available_memory_bytes():
    """Bytes an allocation may use: the smallest of the host's available memory, the
    cgroup limit's headroom and the address-space limit's (a generous guess if none
    is known)."""
    known = [
        value
        for value in (
            host_available_bytes(),
            cgroup_available_bytes(),
            address_space_available_bytes(),
        )
        if value is not None
    ]
    return min(known) if known else 2**40


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
