"""How many cores this process may use: the default thread count of Hearth's native workers."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The cores the scheduler lets this process run on. ``os.cpu_count()`` counts the host's: in a container
    limited by a cpuset, under ``taskset``, or in a test worker pinned to one core, a worker started with that
    many threads has them spin against each other (llama.cpp's threads busy-wait)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1
