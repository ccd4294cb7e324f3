"""CPU sizing: how many cores this process may really use, and how to split them.

Apart from ``tasks.settings`` because it reads the kernel (affinity, cgroup quota), not
the environment; the settings' ``effective_*`` properties call it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

# Where a container sees its own cgroup (cgroup v2, or v1's per-controller folders).
CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cores(cgroup_root: Path = CGROUP_ROOT) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota.

    ``docker run --cpus`` and Kubernetes CPU limits set a CFS quota but leave the
    affinity at every host core, so sizing from the affinity alone (or os.cpu_count)
    would start a process and lanes per host core, and the kernel would throttle them
    all to the quota: more memory and worse latency for no more throughput.

    Args:
        cgroup_root: where the cgroup files are read (tests point it at a folder).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cores = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cgroup_root)
    return max(1, min(cores, quota) if quota else cores)


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """Whole cores the cgroup CPU quota allows (rounded up), or None without a quota.

    Reads cgroup v2 ``cpu.max`` (``"max 100000"`` or ``"400000 100000"``: quota and
    period in microseconds), else v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
    (quota ``-1`` means none). A fractional limit such as ``--cpus 1.5`` rounds up:
    the half core is still worth a lane.

    Args:
        cgroup_root: where the cgroup files are read (tests point it at a folder).
    """
    v2 = _read_text(cgroup_root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return _quota_cores(quota, period)
    for folder in (cgroup_root / "cpu", cgroup_root / "cpu,cpuacct", cgroup_root):
        quota_v1 = _read_text(folder / "cpu.cfs_quota_us")
        period_v1 = _read_text(folder / "cpu.cfs_period_us")
        if quota_v1 is not None and period_v1 is not None:
            return _quota_cores(quota_v1, period_v1)
    return None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:  # absent (no cgroup, other version) or unreadable
        return None


def _quota_cores(quota: str, period: str) -> int | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:  # "max" (v2: no limit) or text this code does not know
        return None
    if q <= 0 or p <= 0:  # v1 writes -1 for no limit
        return None
    return max(1, math.ceil(q / p))


def auto_concurrency(cores: int) -> int:
    """Worker processes for ``cores``: one per core up to 3 cores, then one per 2 cores.

    Each process runs one lane per thread (``tasks.lanes``: decode a group, forward it
    with single-threaded torch). A lone process leaves its lanes idle while it does a
    chunk's serial part (read and hash files, store records, take the next message);
    a second process fills that gap. On the 2-core dev machine two single-lane processes
    beat one two-lane process by ~24% in ``fast`` mode and tied in ``exact`` mode, for
    ~40% more memory (PSS) and ~0.4 s slower start (docs/BENCHMARKS.md). Beyond 3 cores
    two lanes per process keep the number of model copies at half the cores (not
    measured here: no such machine).
    """
    return cores if cores <= 3 else cores // 2
