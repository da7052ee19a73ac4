"""Does ``torch.compile`` pay? Each family's decode eager and compiled (``compile_stages``), whole processes.

For every family of engine_versions.py (the tests' reduced-width oracles, the same shapes), one process decodes
eagerly and one compiled, alternating, ``--repeats`` times. The compiled process reports the time its first
decode took (compiling included), what torch says it spent compiling, the time of a second decode (everything
compiled) and the largest difference from an eager decode of the same latent in the same process.

    python benchmarks/compile_steps.py [--repeats 2] [--only "Wan 2.1,Mochi"] [--load 1] [--encode] [--full-width]
                                       [--dynamic yes|auto|no]

``break-even`` is how many decodes like this one the compiling costs: (first - eager) / (eager - compiled);
"never" where the compiled decode is not faster. ``--encode`` times encodes of the decoded-size frames instead;
``--full-width`` adds Wan 2.1 at the release's width (9 frames at 256x256), where the convolutions weigh more.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from engine_versions import FAMILIES, ROOT  # the same models and latents as the engine comparison

FULL_WIDTH = {"Wan 2.1 full width": ("diffusers_wan(dict(z_dim=16))", (1, 16, 3, 32, 32))}

CHILD = r'''
import json, sys, time
import torch
torch.set_num_threads(2)
sys.path.insert(0, sys.argv[4])
import framestream  # this checkout, as installed in its environment (pip install -e .)
from oracle import *  # noqa: F403  (the builders named in FAMILIES)
from framestream.vae_core import build_vae
from framestream.vae_core.streaming import engine
from framestream.vae_core.streaming.compiled import compile_stages, compile_seconds
ref = eval(sys.argv[1]).eval().requires_grad_(False)
vae = build_vae(ref.state_dict()).requires_grad_(False)
z = torch.randn(*json.loads(sys.argv[2]), generator=torch.Generator().manual_seed(0))
video = z.ndim == 5
with torch.no_grad():
    if sys.argv[5] == "encode":
        frames = engine.decode(vae, z)  # [n, H, W, 3] (or [b, n, H, W, 3])
        frames = frames.reshape(-1, *frames.shape[-3:]) if not video else frames
        run = lambda: engine.encode(vae, frames)
    else:
        run = lambda: engine.decode(vae, z)
    eager = run()  # warm-up: kernels, the plan's probe
    started = time.perf_counter(); run(); seconds = time.perf_counter() - started
    result = {"eager": seconds}
    if sys.argv[3] == "compiled":
        compile_stages(vae, dynamic=json.loads(sys.argv[6]))
        started = time.perf_counter(); run(); result["first"] = time.perf_counter() - started
        result["compiling"] = compile_seconds()
        started = time.perf_counter(); out = run(); result["compiled"] = time.perf_counter() - started
        result["error"] = (out - eager).abs().max().item()
print(json.dumps(result))
'''


def measured(builder: str, shape: tuple, mode: str, direction: str, dynamic: bool | None) -> dict:
    """One process's figures (see CHILD)."""
    done = subprocess.run([sys.executable, "-c", CHILD, builder, json.dumps(list(shape)), mode,
                           os.path.join(ROOT, "tests"), direction, json.dumps(dynamic)], capture_output=True, text=True,
                          cwd=ROOT, timeout=3600)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", help="comma-separated family names")
    parser.add_argument("--load", type=int, default=0, help="single-threaded busy loops running beside (default 0)")
    parser.add_argument("--encode", action="store_true", help="time encodes instead of decodes")
    parser.add_argument("--dynamic", choices=("auto", "yes", "no"), default="yes",
                        help="torch.compile's dynamic: yes (True, compile_stages' default), auto (None) or no (False)")
    parser.add_argument("--full-width", action="store_true", help="add Wan 2.1 at full width, 9 frames at 256x256")
    args = parser.parse_args()
    direction = "encode" if args.encode else "decode"
    dynamic = {"auto": None, "yes": True, "no": False}[args.dynamic]
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    every = {**FAMILIES, **(FULL_WIDTH if args.full_width else {})}
    families = {k: v for k, v in every.items() if not args.only or k in args.only.split(",")}
    try:
        print(f"{direction}, dynamic={dynamic}, {args.load} busy loops beside, {args.repeats} runs each, medians")
        print("| family | eager s | compiled s | compiled / eager | first, compiling, s | torch's compile s "
              "| break-even (clips) | max error |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for name, (builder, shape) in families.items():
            eager, compiled = [], []
            for _ in range(args.repeats):  # alternating whole processes
                eager.append(measured(builder, shape, "eager", direction, dynamic)["eager"])
                compiled.append(measured(builder, shape, "compiled", direction, dynamic))
            plain = statistics.median(eager)
            fast, first, spent = (statistics.median(run[key] for run in compiled)
                                  for key in ("compiled", "first", "compiling"))
            error = max(run["error"] for run in compiled)
            gain = plain - fast
            even = f"{(first - plain) / gain:.0f}" if gain > 0 else "never"
            print(f"| {name} | {plain:.2f} | {fast:.2f} | {fast / plain:.2f} | {first:.1f} | {spent:.1f} | {even} "
                  f"| {error:.1e} |", flush=True)
    finally:
        for process in load:
            process.kill()


if __name__ == "__main__":
    main()
