"""Keep freed memory for reuse in the engine's worker processes (glibc only).

Every chunk of paths allocates a few arrays of tens of MB. By default glibc's ``malloc`` serves
large blocks with ``mmap`` and returns them to the system when freed, so the next chunk's arrays
start as fresh pages and every page is faulted in again (zeroed by the kernel): on the shared
machines we run on that costs about as much as generating the numbers. Raising the ``mmap`` and
trim thresholds (``mallopt(3)``: ``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``) makes ``malloc``
keep those blocks on its heap and hand them out again. Peak memory does not change (the same
arrays are alive at the same time); the process simply keeps its peak until it exits, which is
why this is only done in worker processes, never in the user's own.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1  # the largest value mallopt accepts (an int)


def keep_freed_memory() -> bool:
    """Ask glibc to keep large freed blocks for reuse; False where that is not possible.

    Returns
    -------
    bool
        True when both thresholds were raised (Linux with glibc), False otherwise (nothing
        changed; other C libraries do not need it or do not offer it).
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST))
