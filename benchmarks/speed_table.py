"""Issue 31's speed table: every family's decode and encode against diffusers' one call, quiet and beside a load.

Each (family, size, direction, kind) runs in its own process on 2 threads, the two kinds alternating, and is
timed around the one call after a warm-up call on a short clip (kernels, the plan's probe). FrameStream runs as
the ``framestream`` command runs it (OpenMP's waiting chosen from the load it finds at its start, :mod:`launch`;
until 2026-12-07 a short spin, before that passive waiting); diffusers as a Python user runs it (OpenMP's
default). The models are the tests' reduced-width oracles (tests/oracle.py), the same random
weights for both; the clips are about 33 frames (a latent of 9 frames at 4x time compression) at 128^2 and 256^2.

The loads are started by the benchmark: ``busy1`` / ``busy2`` single-threaded busy loops, ``matmul2`` a torch
process multiplying 512x512 matrices on 2 threads. The table gives, per row, the fastest of ``--repeats`` quiet
runs, FrameStream / diffusers (goal <= 0.9), and per load each one's slowdown and ours / theirs (goal <= 1.1).

    python benchmarks/speed_table.py [--sizes 128,256] [--directions decode,encode] [--loads busy1,busy2,matmul2]
                                     [--repeats 2] [--only "Wan 2.1,SVD"] [--json FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import wait_policy  # noqa: E402  (its matmul load)
from decode_vs_diffusers import import_framestream  # noqa: E402

import_framestream()
FRAMES = 33  # pixel frames of each clip (the nearest length the family allows)


@dataclasses.dataclass(frozen=True)
class Family:
    """How to build one family's oracle and call diffusers on it. ``latents``: the latent frames of the clip
    (None: per-frame latents, ``FRAMES`` of them); ``frames``: the pixel frames an encode is given."""

    builder: str
    channels: int
    spatial: int
    latents: int | None
    frames: int = FRAMES
    warm_latents: int = 2  # the warm-up clip: its latent frames to decode
    warm_frames: int = 5  # and its pixel frames to encode
    decode: str = "ref.decode(z).sample"
    encode: str | None = "ref.encode(x).latent_dist.mode()"
    sizes: tuple[int, ...] = (128, 256)
    metadata: str = "None"  # an expression for build_vae's metadata (the file's, where the weights do not say)


FAMILIES = {
    "Wan 2.1": Family("diffusers_wan(WAN21_SMALL)", 16, 8, 9),
    "Wan 2.2": Family("diffusers_wan(WAN22_SMALL, seed=1)", 48, 16, 9),
    "HunyuanVideo": Family("diffusers_hunyuan()", 16, 8, 9),
    "HunyuanVideo 1.5": Family("diffusers_hv15()", 32, 16, 9),
    "CogVideoX": Family("diffusers_cogvideox()", 16, 8, 9),
    "LTX-Video 0.9": Family("diffusers_ltx(LTX_SMALL)", 128, 32, 5, warm_frames=9),
    "LTX-2": Family("diffusers_ltx2(SMALL_20)", 128, 32, 5, warm_frames=9),
    "Mochi": Family("diffusers_mochi()", 12, 8, 6, frames=31, warm_frames=7),
    "Kandinsky 6": Family("diffusers_kandinsky()", 16, 8, 9),
    "MiniMax H3": Family("diffusers_minimax()", 24, 16, 12, frames=39, warm_latents=7, warm_frames=22),
    # diffusers' CPU attention holds the whole clip's score matrix: 17 frames of 128^2 need 1.2 GB, 256^2 ~19 GB
    "LTX-2 diffusion decoder": Family("diffusers_ltx24()", 128, 32, 3, frames=17, warm_latents=3, encode=None,
                                      sizes=(128,), decode="ref.decode(z, generator=torch.Generator().manual_seed(0)).sample",
                                      metadata="ltx24_metadata(ref)"),
    "image VAE": Family("diffusers_kl(SD)", 4, 8, None, warm_frames=2),
    "SVD": Family("diffusers_svd()", 4, 8, None, warm_frames=2, decode="ref.decode(z, num_frames=z.shape[0]).sample"),
}

CHILD = r'''
import json, sys, time
spec = json.loads(sys.argv[1])
if spec["kind"] == "framestream":  # as the framestream command starts: its waiting chosen from the load it finds
    from framestream.launch import choose_waiting
    choose_waiting()
import torch
torch.set_num_threads(2)
from oracle import *  # noqa: F403  (the builders named in FAMILIES)
ref = eval(spec["builder"]).eval().requires_grad_(False)
z = torch.randn(*spec["latent"], generator=torch.Generator().manual_seed(0))
x = torch.rand(*spec["video"], generator=torch.Generator().manual_seed(1))  # [T, H, W, 3] in [0, 1]
if spec["kind"] == "diffusers":
    def run(z, x):
        if z.ndim == 5:  # a video: [1, 3, T, H, W] in [-1, 1]
            x = x.permute(3, 0, 1, 2)[None] * 2 - 1
        else:  # per-frame latents: the frames as a batch
            x = x.permute(0, 3, 1, 2) * 2 - 1
        return eval(spec[spec["direction"]])
else:
    from framestream.vae_core import build_vae, decode, encode
    vae = build_vae({k: v.clone() for k, v in ref.state_dict().items()}, metadata=eval(spec["metadata"]))
    vae.requires_grad_(False)
    def run(z, x):
        return decode(vae, z) if spec["direction"] == "decode" else encode(vae, x)
with torch.no_grad():
    short = spec["warm_latents"]
    run(z[:, :, :short] if z.ndim == 5 else z[:short], x[:spec["warm_frames"]])  # warm-up: kernels, the plan's probe
    started = time.perf_counter()
    run(z, x)
print(json.dumps({"seconds": time.perf_counter() - started}))
'''

BUSY_LOOP = "while True: pass"
LOADS = {"busy1": [BUSY_LOOP], "busy2": [BUSY_LOOP] * 2, "matmul2": [wait_policy.MATMUL_LOOP.format(threads=2)]}


def shapes(family: Family, size: int) -> tuple[list[int], list[int]]:
    """The latent ``[1, C, T, h, w]`` (``[T, C, h, w]`` per frame) and the video ``[T, H, W, 3]`` of a clip."""
    side = size // family.spatial
    if family.latents is None:
        return [family.frames, family.channels, side, side], [family.frames, size, size, 3]
    return [1, family.channels, family.latents, side, side], [family.frames, size, size, 3]


def timed(name: str, size: int, direction: str, kind: str) -> float:
    family = FAMILIES[name]
    latent, video = shapes(family, size)
    spec = {**dataclasses.asdict(family), "latent": latent, "video": video, "kind": kind, "direction": direction}
    environ = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")}
    environ["PYTHONPATH"] = os.pathsep.join([os.path.dirname(ROOT), os.path.join(ROOT, "tests")])
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True,
                          cwd=ROOT, timeout=3600, env=environ)
    if done.returncode:
        raise RuntimeError(f"{name} {size} {direction} {kind}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def rows(names: list[str], sizes: list[int], directions: list[str]) -> list[tuple[str, int, str]]:
    return [(name, size, direction) for name in names for size in sizes for direction in directions
            if size in FAMILIES[name].sizes and (direction == "decode" or FAMILIES[name].encode)]


def measure(table: list[tuple[str, int, str]], repeats: int) -> dict:
    """The fastest of ``repeats`` runs of each kind, the kinds alternating: {row: {kind: seconds}}."""
    times = {}
    for row in table:
        runs = {"framestream": [], "diffusers": []}
        for _ in range(repeats):
            for kind in runs:
                runs[kind].append(timed(*row, kind))
        times[row] = {kind: min(values) for kind, values in runs.items()}
        print(f"  {row}: {times[row]}", file=sys.stderr, flush=True)
    return times


def beside(load: str, table: list, repeats: int) -> dict:
    processes = [subprocess.Popen([sys.executable, "-c", code]) for code in LOADS[load]]
    try:
        return measure(table, repeats)
    finally:
        for process in processes:
            process.kill()


def report(table: list, quiet: dict, busy: dict[str, dict]) -> None:
    loads = list(busy)
    head = ["family", "size", "", "FrameStream s", "diffusers s", "ours / theirs"]
    for load in loads:
        head += [f"{load}: FrameStream s", "diffusers s", "slowdown ours / theirs"]
    print("| " + " | ".join(head) + " |")
    print("|---|---:|---|" + "---:|" * (len(head) - 3))
    for row in table:
        ours, theirs = quiet[row]["framestream"], quiet[row]["diffusers"]
        cells = [row[0], f"{row[1]}²", row[2], f"{ours:.2f}", f"{theirs:.2f}", f"{ours / theirs:.2f}"]
        for load in loads:
            b = busy[load][row]
            ratio = (b["framestream"] / ours) / (b["diffusers"] / theirs)
            cells += [f"{b['framestream']:.2f}", f"{b['diffusers']:.2f}", f"{ratio:.2f}"]
        print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="128,256")
    parser.add_argument("--directions", default="decode,encode")
    parser.add_argument("--loads", default="", help=f"comma-separated, of {', '.join(LOADS)} (default: quiet only)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", help="comma-separated family names")
    parser.add_argument("--json", help="also write the times to this file")
    args = parser.parse_args()
    names = [name for name in FAMILIES if not args.only or name in args.only.split(",")]
    table = rows(names, [int(s) for s in args.sizes.split(",")], args.directions.split(","))
    quiet, busy = measure(table, args.repeats), {}
    save(args.json, table, quiet, busy)
    for load in filter(None, args.loads.split(",")):
        busy[load] = beside(load, table, args.repeats)
        save(args.json, table, quiet, busy)  # what is measured so far, should a long run be stopped
    print(f"\nfastest of {args.repeats} whole processes each, 2 threads; slowdown = busy / quiet")
    report(table, quiet, busy)


def save(path: str | None, table: list, quiet: dict, busy: dict) -> None:
    if path:
        with open(path, "w") as f:
            json.dump({"quiet": [[*row, quiet[row]] for row in table],
                       "busy": {load: [[*row, times[row]] for row in table] for load, times in busy.items()}}, f)


if __name__ == "__main__":
    main()
