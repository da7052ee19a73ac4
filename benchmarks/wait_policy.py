"""What a competing job does to a decode, with OpenMP's default (spinning) and passive waiting, against diffusers.

Each decode runs in its own process (2 threads), FrameStream with the OpenMP wait policy the runtime starts
with by default (``OMP_WAIT_POLICY`` unset: threads spin at barriers) and with ``PASSIVE`` (what the
``framestream`` command set until 2026-12-07; it now chooses a short spin on a busy machine, :mod:`launch`,
timed here with ``--spincounts 1000``), and diffusers' one-call decode of the same weights and latent as a
Python user runs it (the default policy). The kinds alternate; the table gives the fastest of ``--repeats``
runs, quiet and beside a load the benchmark starts itself: ``--load`` single-threaded busy loops, and with
``--matmul T`` one torch process multiplying 512x512 matrices on T threads (a job that also wants every core and
waits at barriers of its own). The models are the tests' reduced-width oracles (tests/oracle.py), the shapes
those of benchmarks/engine_versions.py.

    python benchmarks/wait_policy.py [--repeats 2] [--load 1] [--matmul 2] [--only "Wan 2.1,Mochi"]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import engine_versions  # noqa: E402
from engine_versions import FAMILIES, ROOT  # noqa: E402

VIDEO_FAMILIES = [name for name, (_, shape) in FAMILIES.items() if len(shape) == 5]  # diffusers decodes them whole

KINDS = {"FrameStream, spinning": ("framestream", {}),
         "FrameStream, passive": ("framestream", {"OMP_WAIT_POLICY": "PASSIVE"}),
         "diffusers": ("diffusers", {})}


MATMUL_LOOP = "import torch; torch.set_num_threads({threads}); a = torch.randn(512, 512)\nwhile True: a @ a"


def timed(builder: str, shape: tuple, kind: str, env: dict) -> float:
    """A decode of this checkout (or diffusers') under ``env`` on top of this process's environment, minus any
    wait setting of its own."""
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    return engine_versions.timed(ROOT, builder, shape, kind, {**environ, **env})


def measure(families: list[str], repeats: int, kinds: dict = KINDS) -> dict:
    times = {}
    for name in families:
        builder, shape = FAMILIES[name]
        runs = {kind: [] for kind in kinds}
        for _ in range(repeats):
            for label, (kind, env) in kinds.items():  # alternating whole processes
                runs[label].append(timed(builder, shape, kind, env))
        times[name] = {label: min(values) for label, values in runs.items()}
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--load", type=int, default=1, help="single-threaded busy loops beside (default 1)")
    parser.add_argument("--matmul", type=int, default=0, metavar="THREADS",
                        help="also a torch matmul loop on this many threads beside (default 0: none)")
    parser.add_argument("--only", help="comma-separated family names")
    parser.add_argument("--spincounts", default="", help="comma-separated GOMP_SPINCOUNT values to time FrameStream "
                        "with too (a short spin before sleeping, between passive's 0 and the default's 300000)")
    args = parser.parse_args()
    families = [name for name in VIDEO_FAMILIES if not args.only or name in args.only.split(",")]
    kinds = {**KINDS, **{f"FrameStream, spin {count}": ("framestream", {"GOMP_SPINCOUNT": count})
                         for count in filter(None, args.spincounts.split(","))}}
    quiet = measure(families, args.repeats, kinds)
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    if args.matmul:
        load.append(subprocess.Popen([sys.executable, "-c", MATMUL_LOOP.format(threads=args.matmul)]))
    try:
        busy = measure(families, args.repeats, kinds)
    finally:
        for process in load:
            process.kill()
    beside = f"{args.load} busy loop(s)" + (f" and a {args.matmul}-thread matmul loop" if args.matmul else "")
    print(f"fastest of {args.repeats}, seconds; quiet / beside {beside}; slowdown = busy / quiet")
    print(f"| family | {' | '.join(kinds)} | slowdown: {' | '.join(kinds)} | passive / diffusers, busy |")
    print("|---|" + "---:|" * (2 * len(kinds) + 1))
    for name in families:
        q, b = quiet[name], busy[name]
        cells = " | ".join(f"{q[k]:.2f} / {b[k]:.2f}" for k in kinds)
        slow = " | ".join(f"{b[k] / q[k]:.2f}" for k in kinds)
        print(f"| {name} | {cells} | {slow} | {b['FrameStream, passive'] / b['diffusers']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
