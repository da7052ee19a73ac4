"""How close a decode comes to what this machine's convolutions and attention can do on the same shapes (CPU).

Every conv and attention call of a real streamed decode is recorded (its
input shape, weights, stride, padding, groups), its FLOPs counted from those
shapes, and each distinct call then timed alone on random data of the same
shape, best of ``--repeats`` runs, with the faster of oneDNN and torch's own
kernel: that is the machine's throughput on this decode's layers. The decode's
wall time is split by stage (the resolution a module's output has) by
attributing the time between consecutive leaf modules to the later one, so
norms, activations, copies and the carries' concatenation count where they
happen. "achieved" is the time the layers' FLOPs need at the measured
throughput over the time the decode spent there.

Usage::

    python benchmarks/roofline.py                   # full-width Wan 2.1 (256, 512 px), LTX-2, HunyuanVideo 1.5, ...
    python benchmarks/roofline.py --cases wan256 --repeats 5
    python benchmarks/roofline.py --cases wan256 --heap   # the same again with glibc's heap for large blocks

With ``--heap`` each case runs a second time in a child process whose glibc
allocator keeps large blocks on its heap (``MALLOC_MMAP_MAX_=0``) instead of
mapping fresh pages for each one: the difference is what the kernel's page
faults on fresh memory cost the decode.
"""

from __future__ import annotations

import argparse
import collections
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE]
from decode_vs_diffusers import import_framestream  # noqa: E402

import_framestream()
from framestream.vae_core import build_vae  # noqa: E402
from framestream.vae_core.demo import demo_vae  # noqa: E402
from framestream.vae_core.streaming import conv as streaming_conv  # noqa: E402
from framestream.vae_core.streaming import engine  # noqa: E402
from framestream.vae_core.streaming.sinks import CallbackSink  # noqa: E402

# case: (family, latent frames, frame size in px)
CASES = {"wan256": ("wan", 3, 256), "wan512": ("wan", 2, 512), "ltx2": ("ltx2", 3, 256),
         "hunyuan15": ("hunyuan15", 3, 256), "ltx": ("ltx", 3, 256), "hunyuan": ("hunyuan", 2, 256)}


def full_width_model(family: str):
    """The family's released widths with random weights (diffusers' default configs are the releases', but for
    LTX-2's decoder, which the release runs with a look-ahead)."""
    if family == "wan":
        return demo_vae(dim=96)
    import diffusers

    name, config = {"ltx": ("AutoencoderKLLTXVideo", {}), "hunyuan": ("AutoencoderKLHunyuanVideo", {}),
                    "ltx2": ("AutoencoderKLLTX2Video", {"decoder_causal": False}),
                    "hunyuan15": ("AutoencoderKLHunyuanVideo15", {})}[family]
    torch.manual_seed(0)
    return build_vae(getattr(diffusers, name)(**config).state_dict()).eval().requires_grad_(False)


def conv_flops(out: torch.Tensor, weight: torch.Tensor) -> int:
    """Multiply-adds times two: each output element sums ``in_channels / groups x kernel`` products."""
    return 2 * out.numel() * weight[0].numel()


def attention_flops(q: torch.Tensor, k: torch.Tensor) -> int:
    """``Q K^T`` and the weighted sum of ``V``: two products of ``L_q x L_k x D`` per head (the softmax left out)."""
    *batch, length_q, depth = q.shape
    return 4 * math.prod(batch) * length_q * k.shape[-2] * depth


class Recorder:
    """Records a decode's convs and attention calls and a timeline of its leaf modules, by stage."""

    def __init__(self, frame_height: int) -> None:
        self.frame_height = frame_height
        self.calls = collections.Counter()  # signature -> how many times it ran
        self.flops = collections.Counter()  # stage -> FLOPs
        self.signature_stage = {}
        self.wall = collections.Counter()  # stage -> seconds of the decode spent there
        self.by_kind = collections.Counter()  # (stage, module class) -> seconds
        self.in_situ = collections.Counter()  # stage -> seconds inside the convs and attention themselves
        self.last = None
        self.last_stage = "other"  # the stage of the module that ran last (attention calls inherit it)

    def stage(self, y) -> str | None:
        if isinstance(y, torch.Tensor) and y.dim() >= 4 and y.shape[-2] > 0:
            return f"{y.shape[-2]}x{y.shape[-1]}"
        return None

    def tick(self, stage: str, kind: str) -> None:
        now = time.perf_counter()
        if self.last is not None:
            self.wall[stage] += now - self.last
            self.by_kind[stage, kind] += now - self.last
        self.last = now

    def leaf_hook(self, module, inputs, output) -> None:
        stage = self.stage(output) or self.stage(inputs[0] if inputs else None) or self.last_stage
        self.tick(stage, type(module).__name__)
        self.last_stage = stage

    def op(self, signature, stage: str, flops: int, seconds: float) -> None:
        self.calls[signature] += 1
        self.signature_stage[signature] = stage
        self.flops[stage] += flops
        self.in_situ[stage] += seconds


def record(vae, z: torch.Tensor) -> tuple[Recorder, float]:
    rec = Recorder(z.shape[3] * vae.spatial_ratio)
    conv_forward, sdpa = streaming_conv.Conv3d._conv_forward, F.scaled_dot_product_attention
    conv2d_forward = nn.Conv2d._conv_forward

    def timed_conv(self, x, weight, bias, forward=conv_forward, kind="conv3d", edges_done=False):
        started = time.perf_counter()
        y = forward(self, x, weight, bias, edges_done=edges_done) if edges_done else forward(self, x, weight, bias)
        shape = tuple(x.shape)
        if self.padding_mode != "zeros" and not edges_done:  # the conv itself runs on the padded copy
            shape = (*shape[:-2], shape[-2] + 2 * self.padding[-2], shape[-1] + 2 * self.padding[-1])
        signature = (kind, shape, tuple(weight.shape), bias is not None, tuple(self.stride), tuple(self.padding),
                     tuple(self.dilation), self.groups, self.padding_mode)
        if y.numel():
            rec.op(signature, rec.stage(y), conv_flops(y, weight), time.perf_counter() - started)
        return y

    def timed_attention(q, k, v, attn_mask=None, **kwargs):
        started = time.perf_counter()
        y = sdpa(q, k, v, attn_mask=attn_mask, **kwargs)
        signature = ("attention", tuple(q.shape), tuple(k.shape), tuple(v.shape),
                     None if attn_mask is None else (tuple(attn_mask.shape), attn_mask.dtype))
        rec.op(signature, rec.last_stage, attention_flops(q, k), time.perf_counter() - started)
        return y

    hooks = [m.register_forward_hook(rec.leaf_hook) for m in vae.modules() if not list(m.children())]
    streaming_conv.Conv3d._conv_forward = lambda self, x, w, b, edges_done=False: timed_conv(
        self, x, w, b, edges_done=edges_done)
    nn.Conv2d._conv_forward = lambda self, x, w, b: timed_conv(self, x, w, b, conv2d_forward, "conv2d")
    F.scaled_dot_product_attention = timed_attention
    try:
        sink = CallbackSink(lambda *chunk: rec.tick("output", "sink"))
        rec.last = started = time.perf_counter()
        engine.decode(vae, z, sink=sink)
        total = time.perf_counter() - started
    finally:
        streaming_conv.Conv3d._conv_forward, nn.Conv2d._conv_forward = conv_forward, conv2d_forward
        F.scaled_dot_product_attention = sdpa
        for hook in hooks:
            hook.remove()
    return rec, total


def best_time(run, repeats: int) -> float:
    run()  # warm up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


@torch.no_grad()
def alone(signature, repeats: int) -> float:
    """The fastest this machine runs one recorded call on random data of its shape (spatial padding done first)."""
    kind = signature[0]
    if kind == "attention":
        _, q, k, v, mask = signature
        q, k, v = torch.randn(q), torch.randn(k), torch.randn(v)
        attn_mask = None if mask is None else torch.ones(mask[0], dtype=torch.bool).tril().to(mask[1])
        return best_time(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask), repeats)
    _, shape, weight_shape, has_bias, stride, padding, dilation, groups, mode = signature
    x, weight = torch.randn(shape), torch.randn(weight_shape)
    bias = torch.randn(weight_shape[0]) if has_bias else None
    if mode != "zeros":  # the padded copy is the stream's cost, not the conv's: time the conv on padded input
        padding = (0,) * len(padding)
    conv = F.conv3d if kind == "conv3d" else F.conv2d
    runs = [lambda: conv(x, weight, bias, stride, padding, dilation, groups)]
    if torch.backends.mkldnn.is_available():
        runs.append(lambda: torch.ops.aten.mkldnn_convolution(x, weight, bias, padding, stride, dilation, groups))
    return min(best_time(run, repeats) for run in runs)


def report(name: str, rec: Recorder, total: float, plain: float, limits: dict) -> None:
    ideal = collections.Counter()
    for signature, count in rec.calls.items():
        ideal[rec.signature_stage[signature]] += count * limits[signature]
    stages = sorted(set(rec.wall) | set(ideal), key=lambda s: (s in ("output", "other"), _area(s)))
    print(f"\n{name}: {total:.2f} s recorded ({plain:.2f} s without the recording), "
          f"{sum(rec.flops.values()) / 1e9:.0f} GFLOP\n")
    print("| stage (output px) | GFLOP | at the measured limit | decode's time there | convs + attention in the "
          "decode | achieved | GFLOP/s achieved |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for stage in stages:
        wall, flops = rec.wall[stage], rec.flops[stage]
        achieved = f"{ideal[stage] / wall:.0%}" if wall and ideal[stage] else "–"
        print(f"| {stage} | {flops / 1e9:.1f} | {ideal[stage]:.2f} s | {wall:.2f} s | {rec.in_situ[stage]:.2f} s | "
              f"{achieved} | {flops / wall / 1e9 if wall else 0:.0f} |")
    whole = sum(ideal.values())
    print(f"| **all** | {sum(rec.flops.values()) / 1e9:.1f} | {whole:.2f} s | {total:.2f} s | "
          f"{sum(rec.in_situ.values()):.2f} s | **{whole / total:.0%}** | "
          f"{sum(rec.flops.values()) / total / 1e9:.0f} |")
    print("\nwhere the rest goes (time outside convs and attention, largest first):")
    other = collections.Counter()
    for (stage, kind), seconds in rec.by_kind.items():
        if kind not in ("Conv3d", "CausalConv3d", "Conv2d"):
            other[kind] += seconds
    for kind, seconds in other.most_common(6):
        print(f"  {kind}: {seconds:.2f} s ({seconds / total:.0%})")


def _area(stage: str) -> int:
    try:
        h, w = stage.split("x")
        return int(h) * int(w)
    except ValueError:
        return 1 << 40


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each layer alone; the best counts")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--heap", action="store_true", help="also run each case with glibc's heap for large blocks")
    args = parser.parse_args(argv)
    if args.heap:
        import subprocess

        plain = [sys.executable, __file__, "--cases", args.cases, "--repeats", str(args.repeats), "--threads",
                 str(args.threads)]
        subprocess.run(plain, check=True)
        print("\nwith MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296 (large blocks from the heap):")
        heap = {**os.environ, "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}
        subprocess.run(plain, check=True, env=heap)
        return
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs")
    for name in args.cases.split(","):
        family, latents, size = CASES[name]
        vae = full_width_model(family)
        r = vae.spatial_ratio
        z = torch.randn(1, vae.latent_channels, latents, size // r, size // r, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            engine.decode(vae, z[:, :, :2], sink=CallbackSink(lambda *chunk: None))  # warm up: kernels, the plan
            started = time.perf_counter()
            engine.decode(vae, z, sink=CallbackSink(lambda *chunk: None))
            plain = time.perf_counter() - started
            rec, total = min((record(vae, z) for _ in range(2)), key=lambda run: run[1])  # the quieter run
        limits = {signature: alone(signature, args.repeats) for signature in rec.calls}
        report(f"{name} ({family}, {latents} latent frames, {size}x{size})", rec, total, plain, limits)


if __name__ == "__main__":
    main()
