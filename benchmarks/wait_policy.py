"""What a competing job does to a decode, with OpenMP's default (spinning) and passive waiting, against diffusers.

Each decode runs in its own process (2 threads), FrameStream with the OpenMP wait policy the runtime starts
with by default (``OMP_WAIT_POLICY`` unset: threads spin at barriers) and with ``PASSIVE`` (what the
``framestream`` command sets, :mod:`launch`), and diffusers' one-call decode of the same weights and latent as a
Python user runs it (the default policy). The kinds alternate; the table gives the fastest of ``--repeats``
runs, quiet and beside ``--load`` single-threaded busy loops the benchmark starts itself. The models are the
tests' reduced-width oracles (tests/oracle.py), the shapes those of benchmarks/engine_versions.py.

    python benchmarks/wait_policy.py [--repeats 2] [--load 1] [--only "Wan 2.1,Mochi"]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from engine_versions import FAMILIES, ROOT  # noqa: E402

VIDEO_FAMILIES = [name for name, (_, shape) in FAMILIES.items() if len(shape) == 5]  # diffusers decodes them whole

CHILD = r'''
import importlib.util, json, os, sys, time
spec = importlib.util.spec_from_file_location("framestream", os.path.join(sys.argv[1], "__init__.py"),
                                              submodule_search_locations=[sys.argv[1]])
sys.modules["framestream"] = module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
sys.path.insert(0, os.path.join(sys.argv[1], "tests"))
import torch
torch.set_num_threads(2)
from oracle import *  # noqa: F403
from framestream.vae_core import build_vae
from framestream.vae_core.streaming import engine
ref = eval(sys.argv[2]).eval()
z = torch.randn(*json.loads(sys.argv[3]), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    if sys.argv[4] == "diffusers":
        run = lambda latent: ref.decode(latent)
    else:
        vae = build_vae(ref.state_dict()).requires_grad_(False)
        run = lambda latent: engine.decode(vae, latent)
    run(z[:, :, :2])  # warm-up: kernels, the plan's probe
    started = time.perf_counter()
    run(z)
print(json.dumps({"seconds": time.perf_counter() - started}))
'''

KINDS = {"FrameStream, spinning": ("framestream", {}),
         "FrameStream, passive": ("framestream", {"OMP_WAIT_POLICY": "PASSIVE"}),
         "diffusers": ("diffusers", {})}


def timed(builder: str, shape: tuple, kind: str, env: dict) -> float:
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    done = subprocess.run([sys.executable, "-c", CHILD, ROOT, builder, json.dumps(list(shape)), kind],
                          capture_output=True, text=True, env={**environ, **env}, timeout=1800)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def measure(families: list[str], repeats: int) -> dict:
    times = {}
    for name in families:
        builder, shape = FAMILIES[name]
        runs = {kind: [] for kind in KINDS}
        for _ in range(repeats):
            for label, (kind, env) in KINDS.items():  # alternating whole processes
                runs[label].append(timed(builder, shape, kind, env))
        times[name] = {label: min(values) for label, values in runs.items()}
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--load", type=int, default=1, help="single-threaded busy loops beside (default 1)")
    parser.add_argument("--only", help="comma-separated family names")
    args = parser.parse_args()
    families = [name for name in VIDEO_FAMILIES if not args.only or name in args.only.split(",")]
    quiet = measure(families, args.repeats)
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    try:
        busy = measure(families, args.repeats)
    finally:
        for process in load:
            process.kill()
    print(f"fastest of {args.repeats}, seconds; quiet / beside {args.load} busy loop(s); slowdown = busy / quiet")
    print("| family | FrameStream spinning | FrameStream passive | diffusers | slowdown: spinning | passive | "
          "diffusers | passive / diffusers, busy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in families:
        q, b = quiet[name], busy[name]
        cells = " | ".join(f"{q[k]:.2f} / {b[k]:.2f}" for k in KINDS)
        slow = " | ".join(f"{b[k] / q[k]:.2f}" for k in KINDS)
        print(f"| {name} | {cells} | {slow} | {b['FrameStream, passive'] / b['diffusers']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
