"""The ``framestream`` command's start, before torch is imported: how OpenMP's threads wait at a barrier, chosen
from how busy the machine is.

torch's CPU kernels run on an OpenMP thread pool whose threads, by default, spin for a while at every barrier
before they sleep (GNU OpenMP: 300000 turns, about a millisecond). A decode is thousands of small operations,
each ending at a barrier. On a quiet machine the spin is what makes them fast: the threads often meet within
microseconds. With a second job on the machine, a spinning thread takes the core the late thread needs, so
every barrier waits for the scheduler: HunyuanVideo 1.5 (reduced) went from 1.36 s to 4.87 s beside one busy
loop. A spin of 1000 turns catches some of the quick meetings and sleeps before a busy core is held long: as
fast as sleeping at once beside busy loops, faster beside a matmul loop, but 3-26 % slower than the default
spin on a quiet machine (benchmarks/wait_policy.py, docs/benchmarks.md). So the command looks first: when
other processes use the cores torch will run on (sampled over 0.1 s from ``/proc/stat``), it asks for the
short spin; on a quiet machine it keeps the default. The setting is read once, when the OpenMP runtime starts,
so it is made here, before anything imports torch; a job that starts later finds the choice made. Any wait
setting the user made is kept. Intel's OpenMP, which some torch builds use, counts in milliseconds instead
(``KMP_BLOCKTIME``): there the threads sleep at once. Where the load cannot be read (not Linux), the short spin.
"""

from __future__ import annotations

import os
import time

WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
SHORT_SPIN = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}
# other processes' use of the cores torch runs on, in cores, from which the machine counts as busy: a browser or
# an idle ComfyUI server stay below it, one busy thread does not
BUSY_CORES = 0.5


def choose_waiting(environ: dict = os.environ, busy: bool | None = None) -> None:
    """The short spin when the machine is busy (``busy`` None: sampled now), unless a wait setting is made."""
    if any(name in environ for name in WAIT_SETTINGS):
        return
    if busy is None:
        busy = cores_in_use() >= BUSY_CORES
    if busy:
        environ.update(SHORT_SPIN)


def cores_in_use(seconds: float = 0.1) -> float:
    """How many of this process's cores other processes kept busy over ``seconds`` (this one sleeps meanwhile);
    infinity where ``/proc/stat`` cannot be read."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    try:
        before = _cpu_times(cores)
        time.sleep(seconds)
        after = _cpu_times(cores)
    except (OSError, ValueError):
        return float("inf")
    busy = total = 0
    for core in cores:
        (busy_0, total_0), (busy_1, total_1) = before[core], after[core]
        busy, total = busy + busy_1 - busy_0, total + total_1 - total_0
    return len(cores) * busy / total if total else float("inf")


def _cpu_times(cores) -> dict[int, tuple[int, int]]:
    """Per core, (ticks busy, ticks in all) since boot: ``/proc/stat``'s idle and iowait columns are not busy."""
    times = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *ticks = line.split()
            if name.startswith("cpu") and name != "cpu" and int(name[3:]) in cores:
                ticks = [int(tick) for tick in ticks[:8]]  # user nice system idle iowait irq softirq steal
                times[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    if set(times) != set(cores):
        raise ValueError("not every core is in /proc/stat")
    return times


def main() -> int:
    choose_waiting()
    from .cli import main as run

    return run()
