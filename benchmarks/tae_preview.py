"""What a whole-clip preview or a draft costs: a TAEHV decode against the full Wan 2.1 VAE, and against a step
of the Wan 2.1 1.3B model it previews (CPU).

Both VAEs have their released widths and random weights; each decode runs in
its own child process (peak RSS from the OS), best of ``--repeats``. The
preview's share of a sampling step is the ratio of FLOPs: the TAE's are
counted from its convs' shapes during the decode, the DiT step's from the
released 1.3B configuration (30 blocks of width 1536, FFN 8960, 512 text
tokens; two model calls a step for classifier-free guidance). At equal
throughput that is the share of the step's time. ``--time-dit`` also times
the step itself: diffusers' ``WanTransformer3DModel`` at the released 1.3B
configuration with random weights, one call (minutes on a CPU), doubled for
guidance.

Usage::

    python benchmarks/tae_preview.py                    # 256 px, 33 frames; 832x480, 81 frames (FLOPs only)
    python benchmarks/tae_preview.py --size 256 --frames 33 --repeats 3 --time-dit
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE]
from decode_vs_diffusers import import_framestream  # noqa: E402
from measured_child import run_child  # noqa: E402

import_framestream()
from framestream.vae_core import build_vae, decode  # noqa: E402
from framestream.vae_core.demo import demo_vae  # noqa: E402
from framestream.vae_core.models.taehv.checkpoints import tensor_shapes  # noqa: E402
from framestream.vae_core.models.taehv.layers import FrameConv  # noqa: E402
from framestream.vae_core.models.taehv.model import TinyVideoAutoencoder, TinyVideoConfig  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402


def tae_model():
    gen = torch.Generator().manual_seed(0)
    tensors = {k: torch.randn(s, generator=gen) / max(1, torch.Size(s[1:]).numel()) ** 0.5
               for k, s in tensor_shapes(TinyVideoConfig()).items()}
    return build_vae(tensors, "taew2_1.safetensors").requires_grad_(False)


def latent(frames: int, height: int, width: int) -> torch.Tensor:
    return torch.randn(1, 16, 1 + (frames - 1) // 4, height // 8, width // 8, generator=torch.Generator().manual_seed(1))


def tae_flops(frames: int, height: int, width: int) -> int:
    """The TAE decode's conv FLOPs (2 per multiply-add), counted on the meta device."""
    total = 0

    def count(module, inputs, out):
        nonlocal total
        total += 2 * out.numel() * module.weight[0].numel()

    with torch.device("meta"):
        vae = TinyVideoAutoencoder(TinyVideoConfig()).requires_grad_(False)
    hooks = [m.register_forward_hook(count) for m in vae.modules() if isinstance(m, FrameConv)]
    z = latent(frames, height, width).to("meta")
    vae.decode_tile(vae.decode_shared(z))
    for hook in hooks:
        hook.remove()
    return total


def dit_step_flops(frames: int, height: int, width: int, dim=1536, ffn=8960, blocks=30, text=512) -> int:
    """One sampling step of Wan 2.1 1.3B (two calls: with and without the prompt), 2 FLOPs per multiply-add."""
    tokens = (1 + (frames - 1) // 4) * (height // 16) * (width // 16)
    per_block = (8 * dim * dim * tokens + 4 * tokens * tokens * dim  # self-attention: projections, scores + values
                 + 4 * dim * dim * tokens + 4 * dim * dim * text + 4 * tokens * text * dim  # cross-attention
                 + 4 * dim * ffn * tokens)  # feed-forward
    return 2 * blocks * per_block


WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6)  # the released Wan 2.1 T2V 1.3B transformer


def dit_step_seconds(frames: int, size: int, repeats: int) -> float:
    """One guided sampling step of Wan 2.1 1.3B (random weights): the best of ``repeats`` calls, twice."""
    from diffusers import WanTransformer3DModel

    model = WanTransformer3DModel(**WAN_1_3B).eval().requires_grad_(False)
    z = latent(frames, size, size)
    text = torch.randn(1, 512, 4096, generator=torch.Generator().manual_seed(2))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model(z, torch.tensor([500]), text, return_dict=False)
        best = min(best, time.perf_counter() - start)
    return 2 * best


def child(kind: str, frames: int, size: int, repeats: int) -> None:
    torch.set_num_threads(2)
    if kind == "dit":
        return print(json.dumps({"seconds": dit_step_seconds(frames, size, repeats)}))
    vae = tae_model() if kind == "tae" else demo_vae(dim=96)
    z = latent(frames, size, size)
    reset_peak_rss()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        decode(vae, z, frames_per_step=z.shape[2] if kind == "tae" else 1)
        best = min(best, time.perf_counter() - start)
    print(json.dumps({"seconds": best, "peak_rss_mib": peak_rss_bytes() / 2**20}))


def main(argv: list[str] | None = None) -> None:
    if argv is None and sys.argv[1:2] == ["child"]:
        kind, frames, size, repeats = sys.argv[2], *map(int, sys.argv[3:6])
        return child(kind, frames, size, repeats)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--time-dit", action="store_true", help="also time a Wan 2.1 1.3B step (diffusers)")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, 2 threads\n")
    print(f"| decode of {args.frames} frames at {args.size} px | seconds | peak RSS (MiB) |\n|---|---|---|")
    runs = {kind: run_child(__file__, kind, str(args.frames), str(args.size), str(args.repeats)) for kind in ("tae", "wan")}
    for kind, name in (("tae", "TAEHV (taew2_1 structure)"), ("wan", "Wan 2.1 VAE (FrameStream)")):
        print(f"| {name} | {runs[kind]['seconds']:.2f} | {runs[kind]['peak_rss_mib']:.0f} |")
    print(f"\nTAE / full VAE time: {runs['tae']['seconds'] / runs['wan']['seconds']:.3f}\n")
    print("| clip | TAE decode GFLOP | Wan 2.1 1.3B step GFLOP | preview share of a step |\n|---|---|---|---|")
    for frames, height, width in ((args.frames, args.size, args.size), (81, 480, 832)):
        tae, dit = tae_flops(frames, height, width), dit_step_flops(frames, height, width)
        print(f"| {frames} x {width}x{height} | {tae / 1e9:.0f} | {dit / 1e9:.0f} | {tae / dit:.1%} |")
    if args.time_dit:
        step = run_child(__file__, "dit", str(args.frames), str(args.size), "1")["seconds"]
        print(f"\nWan 2.1 1.3B guided step at {args.frames} x {args.size}x{args.size}: {step:.1f} s; "
              f"the TAE preview takes {runs['tae']['seconds'] / step:.1%} of it")


if __name__ == "__main__":
    main()
