"""Keeping a serving process's memory flat: glibc's allocator, told to give memory back.

A serving process decodes images and runs model calls in several threads for days. With glibc's
defaults it only grows: up to 8 malloc arenas a core (one per thread allocating at the same time as
another), each keeping its freed image and tensor buffers. Measured with the memory probe of
`bench/bench_service.py` (a 1,000-image cold batch, models loaded, 206 MiB before it):

    glibc defaults, onnxruntime's CPU arena on       1,030 - 1,200 MiB
    two malloc arenas, onnxruntime arena off            800 -   956 MiB
    ... and the heap trimmed after each model call      664 -   669 MiB   (the batch 8-10% slower)
    ... a fixed 256 KiB mmap threshold instead          628 MiB           (38% slower: not used)

With no onnxruntime arena every call's tensors are fresh pages from the kernel: a third of a cold
image's CPU went to page faults. Now serving sessions share one arena that grows by what is asked
and plan no per-shape memory pattern (`backbone.session_options`); same probe, one run each:

    trimmed heap, no onnxruntime arena                  758 MiB   24.5 s
    ... one arena per session (doubling)                965 MiB   20.6 s
    ... one shared arena, no memory pattern             839 MiB   21.8 s   (used)

With the shared arena the trim after every model call no longer bounds the peak, it only costs
time (pages given back are faulted in again by the next call). On a faster machine, 2026-12-04:

    trimmed after every model call                      527 MiB   10.1 s
    never trimmed                                       539 MiB    8.1 s
    trimmed once the batcher has been idle for 1 s      559 MiB   10.2 s   (used; 3,000 images: 639 MiB)
                                                        idle after it: 350 MiB (442 untrimmed)

(The last row is from a later, slower hour; `bench/bench_cold.py`, 8 cold 120-image batches back
to back, old and new code taking turns three times: medians 1.072 -> 0.939, 1.005 -> 0.979,
1.077 -> 1.070 s with the trim moved out of the calls.)

Both calls are no-ops where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import functools

M_ARENA_MAX = -8  # mallopt parameter (malloc.h)


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018 -- glibc has both; another C library may not
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_heap_growth() -> bool:
    """At most two malloc arenas for the whole process; whether it took (False off glibc)."""
    libc = _glibc()
    return bool(libc and libc.mallopt(M_ARENA_MAX, 2))


def release_free_memory() -> None:
    """Give the heap's free pages back to the system (`batching` calls it off the event loop once
    it has had nothing to answer for a moment)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
