"""The memory plan against the engine's own peak, family by family, with the frames streamed away (CPU).

Each family benchmark checks its plan against a decode that writes an mp4, whose encoder (x264's look-ahead)
holds memory of its own. Here every decode hands its frames to a callback that drops them, so the measured
peak is the engine's: the causal carries, the step's activations and its output, and the buffers the CPU's
kernels build the first time a process meets a convolution shape. The carries are held once: a tiled step
overwrites them in place and keeps aside only the parts later tiles still read (a delayed decoder writes a
second copy of each carry that changes shape in a step). "before" is what the two copies of earlier
revisions held. Each case runs in its own process and decodes twice: the first decode is a command line's
(kernels built on first use, which the plan counts), the second a host's that decoded the size before
(against the plan without them). The models are the family benchmarks' own (reduced widths, random
weights). Usage::

    python benchmarks/plan_vs_engine.py"""

from __future__ import annotations

import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE]
from decode_vs_diffusers import import_framestream  # noqa: E402
from measured_child import run_child  # noqa: E402

import_framestream()
from framestream.vae_core.streaming import engine, memory, probe  # noqa: E402
from framestream.vae_core.streaming.runtime import peak_rss_bytes, reset_peak_rss  # noqa: E402
from framestream.vae_core.streaming.settings import Settings  # noqa: E402
from framestream.vae_core.streaming.sinks import CallbackSink  # noqa: E402

MiB = 2**20
# family, latent frames, frame size, tile (None: whole frame)
CASES = (("Wan 2.1 (dim 16)", 3, 256, None), ("Wan 2.1 (dim 16)", 3, 512, None), ("Wan 2.1 (dim 16)", 3, 512, 192),
         ("HunyuanVideo 1.5", 3, 256, None), ("HunyuanVideo 1.5", 3, 256, 128), ("Mochi", 3, 192, None),
         ("Mochi", 3, 256, 128), ("LTX-2 causal", 17, 256, None), ("LTX-2 causal", 17, 512, 288),
         ("LTX-2 release", 33, 256, None), ("LTX-2 release", 2, 512, None), ("LTX-2 release", 33, 256, 160),
         ("LTX-2 release", 9, 512, 288),
         ("LTX-Video 0.9", 17, 256, None), ("LTX-Video 0.9", 17, 256, 160), ("LTX-Video 0.9", 17, 512, 288))


def model_and_latent(family: str, latents: int, size: int):
    if family.startswith("Wan"):
        from framestream.vae_core.demo import demo_vae

        return demo_vae(dim=16), torch.randn(1, 16, latents, size // 8, size // 8)
    if family == "HunyuanVideo 1.5":
        import hunyuan15_decode as bench

        return bench.models()[1], bench.latent(latents, size)
    if family == "Mochi":
        import mochi_decode as bench

        return bench.models()[1], bench.latent(latents, size)
    if family == "LTX-Video 0.9":
        import ltx_decode as bench

        return bench.models()[1], torch.randn(1, 128, latents, size // 32, size // 32,
                                              generator=torch.Generator().manual_seed(1))
    import ltx2_decode as bench
    from framestream.vae_core import build_vae

    vae = build_vae(bench.reference().state_dict(), metadata=bench.CAUSAL if "causal" in family else None)
    return vae, torch.randn(1, 128, latents, size // 32, size // 32, generator=torch.Generator().manual_seed(1))


def child(options: dict) -> None:
    torch.set_num_threads(2)
    vae, z = model_and_latent(options["family"], options["latents"], options["size"])
    engine.decode(vae, z[:, :, :2, :2, :2])  # warm up: kernels, thread pools
    settings = Settings(tile=options["tile"])
    keeps_nothing = CallbackSink(lambda *chunk: None)  # the engine alone: no frames kept, no encoder
    estimate = memory.plan_decode(vae, z.shape, settings, sink=keeps_nothing).estimate
    committed = probe.carry_bytes_per_cell(vae, "decode", z.shape[2]) * z.shape[3] * z.shape[4]
    peaks = []
    for _ in range(2):  # a first decode at this size, then one whose kernels exist already
        base = reset_peak_rss()
        engine.decode(vae, z, sink=keeps_nothing, settings=settings)
        peaks.append(peak_rss_bytes() - base)
    print(json.dumps({"measured": peaks[0], "again": peaks[1], "carries": estimate.carries, "committed": committed,
                      "activations": estimate.activations, "output": estimate.output, "kernels": estimate.kernels,
                      "total": estimate.total}))


def main() -> None:
    print("| model | frames | tiles | carries (before: 2 copies) | activations | output | plan | engine's peak | "
          "peak / plan | second decode / plan without kernels |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for family, latents, size, tile in CASES:
        options = {"family": family, "latents": latents, "size": size, "tile": tile}
        r = run_child(__file__, json.dumps(options))
        print(f"| {family} | {latents} latent, {size} px | {tile or 'none'} | {r['carries'] / MiB:.0f} "
              f"({2 * r['committed'] / MiB:.0f}) | "
              f"{r['activations'] / MiB:.0f} | {r['output'] / MiB:.0f} | {r['total'] / MiB:.0f} MiB | "
              f"{r['measured'] / MiB:.0f} MiB | {r['measured'] / r['total']:.2f} | "
              f"{r['again'] / (r['total'] - r['kernels']):.2f} |", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(json.loads(sys.argv[2]))
    else:
        main()
