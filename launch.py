"""The ``framestream`` command's start, before torch is imported: OpenMP threads that sleep at a barrier instead
of spinning.

torch's CPU kernels run on an OpenMP thread pool whose threads, by default, spin for a while at every barrier
before they sleep. A decode is thousands of small operations, each ending at a barrier. With a second job on
the machine, a spinning thread takes the core the late thread needs, so every barrier waits for the scheduler:
HunyuanVideo 1.5 (reduced) went from 1.05 s to 3.66 s beside one busy loop, against 1.91 s with passive
waiting (benchmarks/wait_policy.py, docs/benchmarks.md). The policy is read once, when the OpenMP runtime
starts, so it is set here, before anything imports torch; a policy the user set is kept.
"""

from __future__ import annotations

import os

WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def prefer_passive_waiting(environ: dict = os.environ) -> None:
    if not any(name in environ for name in WAIT_SETTINGS):
        environ["OMP_WAIT_POLICY"] = "PASSIVE"


def main() -> int:
    prefer_passive_waiting()
    from .cli import main as run

    return run()
