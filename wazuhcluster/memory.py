# -*- test-case-name: tests.test_memory -*-
"""
Process-wide memory settings of a node.

glibc gives every thread that allocates an arena of its own (up to eight
per core), and memory freed in an arena goes back to the system only from
the top of it.  A node's work in threads (the agent store's queries, file
hashing, packing chunks) allocates large transient buffers from several
threads, which leaves tens of megabytes resident in arenas nobody uses any
more: with 100 000 agents and 50 000 synced files, a master held 211 MB
with the default and 155 MB with two arenas (C{benchmarks/bench_scale.py}
reports the figure).  L{limitMallocArenas} sets the limit before any
thread starts, as C{MALLOC_ARENA_MAX} would in the environment.
"""

import ctypes
import ctypes.util
import os

#: glibc's C{mallopt} parameter for the arena limit.
M_ARENA_MAX = -8

#: Arenas a node keeps: the reactor thread's and one for every thread.
NODE_MALLOC_ARENAS = 2


def limitMallocArenas(arenas=NODE_MALLOC_ARENAS, environ=None, loadLibrary=None):
    """
    Limit glibc's malloc arenas to C{arenas}, unless C{MALLOC_ARENA_MAX} is
    set in the environment already (the operator's choice wins).  Call it
    before any thread starts.

    @param environ: the environment (L{os.environ} by default).
    @param loadLibrary: loads the C library (L{ctypes.CDLL} of libc by
        default).
    @return: whether the limit is now set (L{False} on a system without
        glibc's C{mallopt}, where nothing is done).
    """
    environ = os.environ if environ is None else environ
    if environ.get("MALLOC_ARENA_MAX"):
        return True
    try:
        libc = (loadLibrary or _libc)()
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return mallopt(M_ARENA_MAX, arenas) == 1


def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        raise OSError("no C library")
    libc = ctypes.CDLL(name)
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc
