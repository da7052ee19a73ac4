"""The ``framestream`` command's start, before torch is imported: OpenMP threads that spin only briefly at a
barrier before they sleep.

torch's CPU kernels run on an OpenMP thread pool whose threads, by default, spin for a while at every barrier
before they sleep (GNU OpenMP: 300000 turns, about a millisecond). A decode is thousands of small operations,
each ending at a barrier. With a second job on the machine, a spinning thread takes the core the late thread
needs, so every barrier waits for the scheduler: HunyuanVideo 1.5 (reduced) went from 1.36 s to 4.87 s beside
one busy loop. Sleeping at once (``OMP_WAIT_POLICY=PASSIVE``) held it to 2.37 s but cost 6-37 % on a quiet
machine, where the threads often meet within microseconds. A spin of 1000 turns catches some of those meetings
and sleeps before a busy core is held long: 3-26 % slower than spinning when quiet, and as fast as passive
waiting beside busy loops, faster beside a matmul loop (benchmarks/wait_policy.py, docs/benchmarks.md). The
setting is read once, when the OpenMP runtime starts, so it is made here, before anything imports torch; any
wait setting the user made is kept. Intel's OpenMP, which some torch builds use,
counts in milliseconds instead (``KMP_BLOCKTIME``): there the threads sleep at once.
"""

from __future__ import annotations

import os

WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
SHORT_SPIN = {"GOMP_SPINCOUNT": "1000", "KMP_BLOCKTIME": "0"}


def prefer_short_spin(environ: dict = os.environ) -> None:
    if not any(name in environ for name in WAIT_SETTINGS):
        environ.update(SHORT_SPIN)


def main() -> int:
    prefer_short_spin()
    from .cli import main as run

    return run()
