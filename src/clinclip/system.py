"""Facts about the machine this process runs on, read the way a cluster job sees them."""

from __future__ import annotations

import os


def available_cpus() -> int:
    """The CPUs this process may run on (``os.sched_getaffinity``: what SLURM / a container / taskset grants),
    not ``os.cpu_count()`` (every CPU of the node, most of which may belong to other jobs)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # macOS / Windows have no affinity call
        return max(1, os.cpu_count() or 1)
