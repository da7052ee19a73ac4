"""Decode time of every family with two versions of FrameStream, side by side: did a rework slow anything down?

Each (version, family) decode runs in its own process, the versions alternating, ``--repeats`` times; the
table gives the median of each and their ratio. A version is a git revision of this repository, checked out
into a temporary worktree (the current working tree is ``WORKTREE``). The models are the tests' reduced-width
oracles (tests/oracle.py) with the same random weights in both versions.

    python benchmarks/engine_versions.py --before 506eebc --after WORKTREE --repeats 3 [--load 1]

``--load N`` runs N single-threaded busy loops beside every measurement (a machine that is not quiet).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# family -> (oracle builder call, latent shape): small enough for a CPU, long enough for many steps
FAMILIES = {
    "Wan 2.1": ("diffusers_wan(WAN21_SMALL)", (1, 16, 21, 24, 24)),
    "Wan 2.2": ("diffusers_wan(WAN22_SMALL, seed=1)", (1, 48, 21, 12, 12)),
    "HunyuanVideo": ("diffusers_hunyuan()", (1, 16, 9, 16, 16)),
    "HunyuanVideo 1.5": ("diffusers_hv15()", (1, 32, 13, 8, 8)),
    "CogVideoX": ("diffusers_cogvideox()", (1, 16, 9, 16, 16)),
    "LTX-Video 0.9": ("diffusers_ltx(LTX_SMALL)", (1, 128, 13, 6, 6)),
    "LTX-2": ("diffusers_ltx2(SMALL_20)", (1, 128, 13, 6, 6)),
    "Mochi": ("diffusers_mochi()", (1, 12, 13, 12, 12)),
    "image VAE": ("diffusers_kl(SD)", (41, 4, 24, 24)),
    "SVD": ("diffusers_svd()", (41, 4, 12, 12)),
}

CHILD = r'''
import importlib.util, json, os, sys, time
tree, tests = sys.argv[1], sys.argv[4]
spec = importlib.util.spec_from_file_location("framestream", os.path.join(tree, "__init__.py"),
                                              submodule_search_locations=[tree])
sys.modules["framestream"] = module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)  # that version of FrameStream, as the package
sys.path.insert(0, tests)  # today's oracles: the same weights for both versions
import torch
torch.set_num_threads(2)
from oracle import *  # noqa: F403  (the builders named in FAMILIES)
from framestream.vae_core import build_vae
from framestream.vae_core.streaming import engine
ref = eval(sys.argv[2]).eval().requires_grad_(False)
z = torch.randn(*json.loads(sys.argv[3]), generator=torch.Generator().manual_seed(0))
if sys.argv[5:] == ["diffusers"]:  # diffusers' one-call decode of the same weights (video latents only)
    run = lambda latent: ref.decode(latent)
else:
    vae = build_vae(ref.state_dict()).requires_grad_(False)
    run = lambda latent: engine.decode(vae, latent)
with torch.no_grad():
    run(z[:, :, :2] if z.ndim == 5 else z[:2])  # warm-up: kernels, the plan's probe
    started = time.perf_counter()
    run(z)
print(json.dumps({"seconds": time.perf_counter() - started}))
'''


def checkout_of(revision: str, folder: str) -> str:
    if revision == "WORKTREE":
        return ROOT
    path = os.path.join(folder, revision)
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", path, revision], check=True,
                   capture_output=True)
    return path


def timed(tree: str, builder: str, shape: tuple, kind: str = "framestream", env: dict | None = None) -> float:
    """One decode's seconds in a fresh process: FrameStream at ``tree``, or (``kind="diffusers"``) diffusers;
    ``env``: the process's whole environment (default: this one's)."""
    done = subprocess.run([sys.executable, "-c", CHILD, tree, builder, json.dumps(list(shape)),
                           os.path.join(ROOT, "tests"), kind], capture_output=True, text=True, cwd=tree, timeout=1800,
                          env=env)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="a git revision, or WORKTREE")
    parser.add_argument("--after", default="WORKTREE", help="a git revision, or WORKTREE (default)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", help="comma-separated family names")
    parser.add_argument("--load", type=int, default=0, help="single-threaded busy loops running beside (default 0)")
    args = parser.parse_args()
    load = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    families = {k: v for k, v in FAMILIES.items() if not args.only or k in args.only.split(",")}
    with tempfile.TemporaryDirectory() as folder:
        trees = {"before": checkout_of(args.before, folder), "after": checkout_of(args.after, folder)}
        try:
            print(f"{args.load} busy loops beside, {args.repeats} runs each, medians")
            print(f"| family | before ({args.before}) s | after ({args.after}) s | after / before |")
            print("|---|---:|---:|---:|")
            for name, (builder, shape) in families.items():
                runs = {"before": [], "after": []}
                for _ in range(args.repeats):
                    for version in ("before", "after"):  # alternating whole processes
                        runs[version].append(timed(trees[version], builder, shape))
                before, after = (statistics.median(runs[v]) for v in ("before", "after"))
                print(f"| {name} | {before:.2f} | {after:.2f} | {after / before:.2f} |", flush=True)
        finally:
            for process in load:
                process.kill()
            for tree in trees.values():
                if tree != ROOT:
                    subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], capture_output=True)


if __name__ == "__main__":
    main()
