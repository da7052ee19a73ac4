"""``framestream``: decode and encode video latents from the shell, or run the demo.

Every failure a user can cause ends in one line on stderr and a non-zero exit
code, with nothing written to the output path.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from .vae_core import engine
from .vae_core.checkpoints import load_vae
from .vae_core.demo import demo_vae, moving_shapes
from .vae_core.errors import FrameStreamError
from .vae_core.files import check_writable, read_frames, read_latent, write_frames, write_latent
from .vae_core.runtime import DTYPES, OUT_OF_MEMORY, peak_memory_text, resolve_device, resolve_dtype


class StderrProgress:
    """``label: done/total steps, elapsed, ETA`` on stderr, redrawn in place on a terminal."""

    def __init__(self, label: str, quiet: bool = False) -> None:
        self.label, self.quiet = label, quiet
        self.started = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last_line = 0.0

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        elapsed = now - self.started
        if not self.tty and done not in (0, total) and now - self.last_line < 5.0:
            return
        self.last_line = now
        eta = f", ETA {elapsed / done * (total - done):.1f} s" if done else ""
        end = "\r" if self.tty and done < total else "\n"
        sys.stderr.write(f"{self.label}: {done}/{total} steps, {elapsed:.1f} s{eta}{end}")
        sys.stderr.flush()


def _check_output(path: str, suffixes: tuple[str, ...]) -> None:
    """Before any work: the output's kind and folder."""
    if not path.lower().endswith(suffixes):
        raise FrameStreamError(f"the output (OUT) must end in {' or '.join(suffixes)}: {path}")
    check_writable(path)


def _load(args) -> tuple[torch.nn.Module, torch.device, torch.dtype]:
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    return load_vae(args.vae, device, dtype), device, dtype


def cmd_decode(args) -> None:
    _check_output(args.output, (".safetensors",))
    latent = read_latent(args.latent)
    vae, device, dtype = _load(args)
    started = time.perf_counter()
    frames = engine.decode(vae, latent, frames_per_step=args.frames_per_step, progress=StderrProgress("decode", args.quiet))
    write_frames(args.output, frames)
    print(f"decoded {tuple(latent.shape)} -> {frames.shape[0]} frames {frames.shape[2]}x{frames.shape[1]} "
          f"in {time.perf_counter() - started:.2f} s ({vae.family}, {device}, {str(dtype)[6:]}), "
          f"{peak_memory_text(device)} -> {args.output}")


def cmd_encode(args) -> None:
    _check_output(args.output, (".latent", ".safetensors"))
    frames = read_frames(args.video)
    vae, device, dtype = _load(args)
    started = time.perf_counter()
    latent = engine.encode(vae, frames, latents_per_step=args.latents_per_step, progress=StderrProgress("encode", args.quiet))
    write_latent(args.output, latent)
    print(f"encoded {frames.shape[0]} frames -> latent {tuple(latent.shape)} in {time.perf_counter() - started:.2f} s"
          f" ({vae.family}, {device}, {str(dtype)[6:]}), {peak_memory_text(device)} -> {args.output}")


def cmd_demo(args) -> None:
    if args.output:
        check_writable(args.output)
    device = resolve_device(args.device)
    vae = demo_vae().to(device)
    clip = moving_shapes(args.frames, args.size, args.size)
    print(f"demo: {vae.family} at reduced width ({sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M random "
          f"weights, seeded), a generated {args.frames}-frame {args.size}x{args.size} clip, on {device}")
    started = time.perf_counter()
    latent = engine.encode(vae, clip, progress=StderrProgress("encode", args.quiet))
    encoded = time.perf_counter()
    frames = engine.decode(vae, latent, frames_per_step=args.frames_per_step, progress=StderrProgress("decode", args.quiet))
    decoded = time.perf_counter()
    whole = engine.decode(vae, latent, frames_per_step=latent.shape[2])
    print(f"encode: {clip.shape[0]} frames -> latent {tuple(latent.shape)} in {encoded - started:.2f} s")
    print(f"decode: {latent.shape[2]} latent frames -> {frames.shape[0]} frames, {args.frames_per_step} per step, "
          f"in {decoded - encoded:.2f} s")
    print(f"streamed vs whole-clip decode: max |difference| = {(frames - whole).abs().max().item():.2e}")
    print(peak_memory_text(device))
    if args.output:
        write_frames(args.output, frames)
        print(f"frames written to {args.output}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="framestream", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
        p.add_argument("--dtype", choices=list(DTYPES), help="working precision (default: bf16 on GPU, fp32 on CPU)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")

    p = sub.add_parser("decode", help="latent -> frames [B*T, H, W, 3] in [0, 1] (the host's VAEDecode output)")
    p.add_argument("vae", help="video VAE .safetensors (Wan 2.1 / 2.2, original or diffusers layout)")
    p.add_argument("latent", help="a host .latent file or a .safetensors with one [C,T,H,W] or [B,C,T,H,W] tensor")
    p.add_argument("-o", "--output", required=True, help="OUT.safetensors, holding the tensor 'frames'")
    p.add_argument("--frames-per-step", type=int, default=engine.DEFAULT_FRAMES_PER_STEP,
                   help=f"latent frames decoded per step (default {engine.DEFAULT_FRAMES_PER_STEP})")
    common(p)
    p.set_defaults(run=cmd_decode)

    p = sub.add_parser("encode", help="frames -> a .latent file the host's Load Latent opens")
    p.add_argument("vae", help="video VAE .safetensors")
    p.add_argument("video", help="a .safetensors holding 'frames' [T, H, W, 3] in [0, 1]")
    p.add_argument("-o", "--output", required=True, help="OUT.latent")
    p.add_argument("--latents-per-step", type=int, default=engine.DEFAULT_LATENTS_PER_STEP,
                   help="latent frames produced per step after the first (each takes 4 pixel frames)")
    common(p)
    p.set_defaults(run=cmd_encode)

    p = sub.add_parser("demo", help="encode and decode a generated clip with an embedded small VAE")
    p.add_argument("--frames", type=int, default=33, help="clip length in frames (default 33)")
    p.add_argument("--size", type=int, default=128, help="frame size in pixels (default 128)")
    p.add_argument("--frames-per-step", type=int, default=engine.DEFAULT_FRAMES_PER_STEP)
    p.add_argument("-o", "--output", help="also save the decoded frames to this .safetensors")
    p.add_argument("--device", default="auto")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except FrameStreamError as err:
        print(f"framestream: error: {err}", file=sys.stderr)
        return 1
    except OUT_OF_MEMORY:
        print("framestream: error: out of memory; try a smaller --frames-per-step, --dtype bf16 or another --device",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("framestream: interrupted; nothing was written", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
