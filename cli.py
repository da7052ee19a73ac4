"""``framestream``: decode and encode video latents from the shell, or run the demo.

Every failure a user can cause ends in one line on stderr and a non-zero exit
code, with nothing written to the output path.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
import warnings
from fractions import Fraction

import torch

from .vae_core.streaming import distributed, engine
from .vae_core.models.registry import load_vae, supported
from .vae_core.demo import FIXTURE_PATH, demo_vae, fixture_vae, moving_shapes
from .vae_core.errors import FrameStreamError
from .vae_core.io.files import check_writable, read_frames, read_latent, write_frames, write_latent
from .vae_core.io.progress import ConsoleProgress
from .vae_core.quality import psnr
from .vae_core.streaming.compiled import compile_seconds, compile_stages
from .vae_core.streaming.runtime import DTYPES, OUT_OF_MEMORY, peak_memory_text, resolve_device, resolve_dtype
from .vae_core.streaming.inputs import check_latent
from .vae_core.streaming.memory import check_tile, plan_decode
from .vae_core.streaming.settings import Settings, quiet
from .vae_core.streaming.sinks import FrameSink
from .vae_core.streaming.tiles import DEFAULT_OVERLAP_PX
from .vae_core.io.video import SUFFIXES as VIDEO_CONTAINERS, VideoFileSink
from .vae_core.io.audio import read_sound
from .vae_core.io.video_reader import EIGHT_BIT, FULL_PRECISION, read_video


VIDEO_SUFFIXES = tuple(VIDEO_CONTAINERS)  # what VideoFileSink writes
SMALL_TILE_PX = 256  # below this, tiles' halos dominate (64-128 px tiles decode 3-5x slower than untiled)
MAX_FPS = 1000  # beyond any camera or screen; a larger rate is a typo (1e9), and players choke on it


def _check_output(args, suffixes: tuple[str, ...]) -> None:
    """Before any work: the output's kind and folder, and that it replaces a file only when asked to."""
    path = args.output
    if not path.lower().endswith(suffixes):
        raise FrameStreamError(f"the output (OUT) must end in {' or '.join(suffixes)}: {path}")
    check_writable(path, overwrite=args.overwrite)


def _load(args) -> tuple[torch.nn.Module, torch.device, torch.dtype]:
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    vae = load_vae(args.vae, device, dtype).configure(normalized_latents=args.ltx_latents == "normalized",
                                                      decode_timestep=getattr(args, "decode_timestep", None),
                                                      noise_seed=getattr(args, "ltx_noise_seed", None))
    if args.compile:
        # the graph breaks are by design (vae_core/streaming/compiled.py); torch would log each as a warning
        logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
        compile_stages(vae)
    return vae, device, dtype


def _settings(args, label: str, lead: bool = True, **steps) -> Settings:
    """The command line's one translation into the engine's settings; the ``lead`` process states the plan."""
    bar = ConsoleProgress(label, args.quiet)
    report = (lambda line: _say(args, line)) if lead else quiet
    return Settings(tile=args.tile, overlap=_overlap(args), budget=_budget(args), progress=bar, on_retry=bar.retry,
                    report_plan=report, **steps)


def _budget(args) -> int | None:
    if args.max_memory is None:
        return None
    if not args.max_memory > 0:
        raise FrameStreamError(f"--max-memory must be more than 0 GB, got {args.max_memory:g}")
    return int(args.max_memory * 2**30)


def _overlap(args) -> int:
    """--overlap, or with a --tile given alone the default overlap capped at a quarter of the tile (so a small
    tile works as asked)."""
    if args.overlap is not None:
        return args.overlap
    return DEFAULT_OVERLAP_PX if not isinstance(args.tile, int) else min(DEFAULT_OVERLAP_PX, args.tile // 4)


def _check_tile(args, vae, settings: Settings) -> None:
    """A --tile the model cannot take is refused; one that makes tiling several times slower than one whole
    frame is warned about (after the refusals, so a refused run says only why)."""
    tile = args.tile
    if not isinstance(tile, int):
        return
    check_tile(vae, tile)
    work = (tile / (tile - settings.overlap)) ** 2  # each tile's area over the area it adds to the frame
    if work >= 1.5 or tile < SMALL_TILE_PX:
        warnings.warn(f"tiles of {tile} px overlapping by {settings.overlap} px compute each pixel about {work:.1f} "
                      f"times, plus each tile's own halo at every stage: small tiles decode several times slower "
                      f"than untiled; use --tile auto or {SMALL_TILE_PX} px or more unless memory forces it")


def _fps_arg(text: str) -> Fraction:
    """A frame rate as a whole number, a decimal or a fraction (30000/1001)."""
    try:
        rate = Fraction(text)
    except (ValueError, ZeroDivisionError):
        rate = None
    if rate is None or rate <= 0 or rate > MAX_FPS:
        raise argparse.ArgumentTypeError(f"expected a positive frame rate of at most {MAX_FPS} such as 16, 23.976 "
                                         f"or 30000/1001, got {text!r}")
    return rate


def _demo_size_arg(text: str) -> tuple[int, int]:
    """The demo's frame size: one number (a square) or WIDTHxHEIGHT."""
    width, _, height = text.lower().partition("x")
    height = height or width
    if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise argparse.ArgumentTypeError(f"expected a size in pixels such as 128, or WIDTHxHEIGHT such as 192x128, "
                                         f"got {text!r}")
    return int(width), int(height)


def _tile_arg(text: str):
    if text in ("auto", "none"):
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto, none or a size in pixels, got {text!r}") from None


def _frame_sink(args):
    """The output: a video file (with the --audio sound, read now so a bad one stops the run before any work),
    or frames kept for a .safetensors file."""
    if args.output.lower().endswith(VIDEO_SUFFIXES):
        sound = read_sound(args.audio, required=True) if args.audio else None
        return VideoFileSink(args.output, args.fps, crf=args.crf, lossless=args.lossless, sound=sound)
    if args.audio:
        raise FrameStreamError(f"--audio goes into a video file; {args.output} is not one (write "
                               f"{', '.join(VIDEO_SUFFIXES)})")
    return FrameSink()


def cmd_decode(args) -> None:
    if not distributed.launched_by_torchrun():
        return _decode(args, engine.decode, lead=True)
    # under torchrun: every rank runs its share of the tiles, rank 0 writes and reports
    with distributed.process_group(resolve_device(args.device)) as device:
        args.device = str(device)
        _decode(args, distributed.decode, lead=torch.distributed.get_rank() == 0)


def _decode(args, decode, lead: bool) -> None:
    _check_output(args, (".safetensors", *VIDEO_SUFFIXES))
    sink = _frame_sink(args)  # checks fps and crf before any work
    settings = _settings(args, "decode", lead, frames_per_step=args.frames_per_step,
                         statistics_passes=args.statistics_passes)
    latent = read_latent(args.latent)
    vae, device, dtype = _load(args)
    started = time.perf_counter()
    shape = check_latent(vae, latent, args.num_frames).shape
    _check_tile(args, vae, settings)
    work = plan_decode(vae, shape, settings, sink=sink).check_budget(settings)  # an impossible budget, before any work
    videos, _, length, height, width = shape
    frames = decode(vae, latent, sink=sink, settings=settings, num_frames=args.num_frames, plan=work)
    if not lead:
        return
    if isinstance(frames, torch.Tensor):
        write_frames(args.output, frames)
    count = vae.decoded_frames(length) * videos
    height, width = height * vae.spatial_ratio, width * vae.spatial_ratio
    print(f"decoded {tuple(latent.shape)} -> {count} frames {width}x{height} in {time.perf_counter() - started:.2f} s"
          f"{_compiling(args)} ({vae.family}, {device}, {str(dtype)[6:]}), {peak_memory_text(device)} -> {args.output}")


def _compiling(args) -> str:
    """The compile time a --compile run paid, for its summary line."""
    seconds = compile_seconds() if args.compile else None
    return "" if seconds is None else f", {seconds:.1f} s of it compiling"


def _say(args, line: str) -> None:
    """A line about the run on stderr (the plan, before any work), unless --quiet."""
    if not args.quiet:
        _stderr_line(line)


def _frames_source(args, vae):
    """The input frames: a whole tensor from a safetensors file (.latent is one too, so it gets the tensor-file
    message rather than a video one), or a video file of any container PyAV reads, read frame by frame."""
    if args.video.lower().endswith((".safetensors", ".latent")):
        given = [flag for flag, value, default in (("--size", args.size, None), ("--start", args.start, 0),
                                                   ("--stop", args.stop, None), ("--stride", args.stride, 1),
                                                   ("--eight-bit", args.eight_bit, False)) if value != default]
        if given:
            raise FrameStreamError(f"{' and '.join(given)} apply to reading a video file; {args.video} holds the "
                                   "frames themselves (crop, resize or pick them before saving it)")
        return {"frames": read_frames(args.video)}
    size = _size_arg(args.size)
    reading = EIGHT_BIT if args.eight_bit else FULL_PRECISION
    reader = read_video(args.video, args.start, args.stop, args.stride, size, chunk=(1, vae.temporal_ratio),
                        reading=reading)
    return {"frames": reader, "frame_count": reader.frames}


def _size_arg(text: str | None):
    if text is None:
        return None
    width, _, height = text.lower().partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise FrameStreamError(f"--size must be WIDTHxHEIGHT in pixels, both at least 1, such as 832x480; got {text!r}")
    return int(width), int(height)


def cmd_encode(args) -> None:
    _check_output(args, (".latent", ".safetensors"))
    settings = _settings(args, "encode", latents_per_step=args.latents_per_step)
    vae, device, dtype = _load(args)
    source = _frames_source(args, vae)
    _check_tile(args, vae, settings)
    started = time.perf_counter()
    latent = engine.encode(vae, **source, settings=settings)
    write_latent(args.output, latent)
    print(f"encoded -> latent {tuple(latent.shape)} in {time.perf_counter() - started:.2f} s{_compiling(args)}"
          f" ({vae.family}, {device}, {str(dtype)[6:]}), {peak_memory_text(device)} -> {args.output}")


def cmd_plan(args) -> None:
    """What a decode would hold (steps or temporal windows, tiles, carries, estimated peak, output), doing none of it."""
    device = _planned_device(args.device)
    budget = _budget(args)
    if device.type == "cuda" and not torch.cuda.is_available() and budget is None and args.tile == "auto":
        raise FrameStreamError("this machine has no CUDA GPU to ask for free memory: give --max-memory to plan for one")
    settings = Settings(frames_per_step=args.frames_per_step, tile=args.tile, overlap=_overlap(args), budget=budget)
    vae = load_vae(args.vae, "cpu", resolve_dtype(args.dtype, device))  # the plan needs shapes, not the device
    vae.configure(decode_timestep=args.decode_timestep)
    shape = _planned_latent_shape(args, vae)
    _check_tile(args, vae, settings)
    print(plan_decode(vae, shape, settings, device, _planned_sink(args)).check_budget(settings)
          .describe(vae.spatial_ratio))


def _planned_sink(args):
    """What the decode would write into, for its memory (nothing is written): a video file's encoder, or the
    frames a .safetensors output keeps (also without --output)."""
    if args.output is None or args.output.lower().endswith(".safetensors"):
        return FrameSink()
    if not args.output.lower().endswith(VIDEO_SUFFIXES):
        raise FrameStreamError(f"the output (--output) must end in {' or '.join(('.safetensors', *VIDEO_SUFFIXES))}: "
                               f"{args.output}")
    return VideoFileSink(args.output, 24, lossless=args.lossless)


def _planned_device(name: str) -> torch.device:
    """A device to plan for, which (unlike one to run on) need not be on this machine."""
    try:
        return resolve_device(name)
    except FrameStreamError:
        if name.startswith("cuda"):
            return torch.device(name)
        raise


def _planned_latent_shape(args, vae) -> tuple[int, ...]:
    if (args.latent is None) == (args.frames is None):
        raise FrameStreamError("give a LATENT file, or --frames and --size for a video of that many frames and size")
    if args.latent is not None:
        return tuple(check_latent(vae, read_latent(args.latent), args.num_frames).shape)
    if args.size is None:
        raise FrameStreamError("--frames needs --size WIDTHxHEIGHT too, such as --size 832x480")
    width, height = _size_arg(args.size)
    r = vae.spatial_ratio
    if args.frames < 1 or width < r or height < r:
        raise FrameStreamError(f"--frames must be at least 1 and --size at least {r}x{r} px for the {vae.family}")
    frames = vae.latent_frames(args.frames) if vae.latent_layout == "video" else args.frames
    return (1, vae.latent_channels, frames, height // r, width // r)


def cmd_demo(args) -> None:
    if args.output:
        _check_output(args, (".safetensors", *VIDEO_SUFFIXES))
        _frame_sink(args)  # checks fps and crf before any work
    width, height = args.size
    device = resolve_device(args.device)
    trained = os.path.exists(FIXTURE_PATH)
    vae = (fixture_vae() if trained else demo_vae()).to(device)
    clip = moving_shapes(args.frames, height, width)
    kind = "trained weights" if trained else "seeded random weights: the trained fixture is not installed"
    print(f"demo: {vae.family} architecture at reduced width ({sum(p.numel() for p in vae.parameters()) / 1e6:.2f} M "
          f"{kind}), a generated {args.frames}-frame {width}x{height} clip, on {device}")
    started = time.perf_counter()
    latent = engine.encode(vae, clip, progress=ConsoleProgress("encode", args.quiet))
    encoded = time.perf_counter()
    frames = engine.decode(vae, latent, frames_per_step=args.frames_per_step, progress=ConsoleProgress("decode", args.quiet))
    decoded = time.perf_counter()
    whole = engine.decode(vae, latent, frames_per_step=latent.shape[2])
    tile = max(width, height) // 2 + 32
    tiled = engine.decode(vae, latent, tile=tile, overlap=32) if tile < max(width, height) else None
    kept = clip[: frames.shape[0], : frames.shape[1], : frames.shape[2]]  # the encoder crops to whole latent pixels
    print(f"encode: {clip.shape[0]} frames -> latent {tuple(latent.shape)} in {encoded - started:.2f} s")
    per_step = args.frames_per_step or plan_decode(vae, tuple(latent.shape), Settings()).advance
    print(f"decode: {latent.shape[2]} latent frames -> {frames.shape[0]} frames, {per_step} per step, "
          f"in {decoded - encoded:.2f} s")
    print(f"reconstruction PSNR vs the input clip: {psnr(frames, kept):.1f} dB")
    print(f"streamed vs whole-clip decode: max |difference| = {(frames - whole).abs().max().item():.2e}")
    if tiled is None:
        print(f"tiles: a {width}x{height} px frame fits one {tile} px tile, so nothing was tiled (try --size 128 or more)")
    else:
        print(f"2x2 tiles of {tile} px vs whole frame: PSNR {psnr(tiled, frames):.1f} dB")
    print(peak_memory_text(device))
    if args.output:
        _save_frames(args, frames)
        print(f"decoded clip written to {args.output}")
    print(f"demo done in {time.perf_counter() - started:.2f} s")


def _save_frames(args, frames: torch.Tensor) -> None:
    sink = _frame_sink(args)
    if isinstance(sink, FrameSink):
        write_frames(args.output, frames)
        return
    sink.start((1, *frames.shape))
    sink.write(0, 0, frames)
    sink.result()


class _Parser(argparse.ArgumentParser):
    """argparse with the one-line errors (and exit status 1) of every other failure; subcommands inherit it."""

    def error(self, message: str):
        self.exit(1, f"framestream: error: {message} (see: {self.prog} --help)\n")


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("framestream")
    except Exception:  # a git clone used without pip install
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="framestream", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--version", action="version", version=f"framestream {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
        p.add_argument("--dtype", choices=list(DTYPES), help="working precision (default: bf16 on GPU, fp32 on CPU)")
        p.add_argument("--tile", type=_tile_arg, default="auto",
                       help="auto (the largest tile that fits the memory, or none), none, or a tile size in pixels")
        p.add_argument("--overlap", type=int,
                       help=f"tile overlap in pixels, blended linearly (default {DEFAULT_OVERLAP_PX}, at most a "
                            "quarter of a --tile given alone)")
        p.add_argument("--max-memory", type=float, metavar="GB",
                       help="memory budget for the work beyond the weights (default: what the device has free)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
        p.add_argument("--compile", action="store_true",
                       help="compile each step's work with torch.compile (inductor; on the CPU it needs a C++ "
                            "compiler): the first steps pay 10-80 s compiling; see docs/benchmarks.md for when it pays")
        p.add_argument("--ltx-latents", choices=("normalized", "raw"), default="normalized",
                       help="LTX-Video and LTX-2: latents normalised by the checkpoint's per-channel statistics, as the "
                            "host saves them and diffusers' pipelines make them (default), or the VAE's raw space")

    def video_output(p: argparse.ArgumentParser) -> None:
        p.add_argument("--fps", type=_fps_arg, default=Fraction(16),
                       help="frame rate of a video output: 16, 23.976 or 30000/1001 (default 16, Wan's)")
        p.add_argument("--crf", type=int, default=19, help="h264 quality, 0-51, lower is better (default 19)")
        p.add_argument("--lossless", action="store_true", help="lossless RGB h264 (large files; not for browsers)")
        p.add_argument("--audio", metavar="SOUND",
                       help="a sound to put in the video file (any file PyAV reads: .wav, .flac, .mp3, .m4a, a video's "
                            "track): AAC, Opus in .webm, as long as the sound")

    def overwrite(p: argparse.ArgumentParser) -> None:
        p.add_argument("-y", "--overwrite", action="store_true", help="replace OUT if it exists (default: refuse)")

    p = sub.add_parser("decode", help="latent -> a video file, or frames [B*T, H, W, 3] in [0, 1] (the host's IMAGE)")
    p.add_argument("vae", help=f"VAE .safetensors: a {supported()} (original, diffusers or ComfyUI layout)")
    p.add_argument("latent", help="a host .latent file or a .safetensors with one tensor: [C,T,H,W] or [B,C,T,H,W] "
                                  "for video VAEs, [N,C,H,W] (one latent per frame) for image VAEs and SVD")
    p.add_argument("-o", "--output", required=True,
                   help="OUT.mp4 (.mkv, .mov; .webm as VP9), written frame by frame, or OUT.safetensors holding the tensor "
                        "'frames'")
    p.add_argument("--frames-per-step", type=int, default=engine.DEFAULT_FRAMES_PER_STEP,
                   help="latent frames decoded per step (default: sized from the frame, within the memory budget)")
    p.add_argument("--num-frames", type=int,
                   help="for a batch of per-frame latents [N, C, H, W] (Stable Video Diffusion, image VAEs): frames "
                        "per video, when N holds several videos (default: one video of N frames)")
    p.add_argument("--statistics-passes", type=int,
                   help="passes that gather GroupNorm statistics before the one that writes. HunyuanVideo and SVD "
                        "(over the clip): default the model's, 1 for HunyuanVideo, 2 for SVD; 0: running statistics. "
                        "CogVideoX, Kandinsky 6, SeedVR2 and image VAEs in tiles (each step's statistics over its "
                        "tiles): default one pass per norm, exact; fewer end in one pass that estimates the rest "
                        "(1: fastest, seams may show)")
    p.add_argument("--decode-timestep", type=float, default=0.05,
                   help="LTX-Video 0.9.1+ and timestep-conditioned LTX-2: the timestep the decoder is conditioned on (default 0.05, as "
                        "Lightricks' pipelines and the host)")
    p.add_argument("--ltx-noise-seed", type=int, default=0,
                   help="LTX-Video 0.9.1 and LTX-2 decoders that add noise: its seed (default 0)")
    video_output(p)
    overwrite(p)
    common(p)
    p.set_defaults(run=cmd_decode)

    p = sub.add_parser("encode", help="a video file or frames -> a .latent file the host's Load Latent opens")
    p.add_argument("vae", help="VAE .safetensors (as for decode)")
    p.add_argument("video", help="a video file (.mp4, .mkv, .mov, .webm, .avi ...), read frame by frame, or a .safetensors holding "
                                 "'frames' [T, H, W, 3] in [0, 1]")
    p.add_argument("-o", "--output", required=True,
                   help="OUT.latent or OUT.safetensors, in the host's latent file format (its Load Latent opens it)")
    p.add_argument("--start", type=int, default=0, help="first frame of a video file to encode (default 0)")
    p.add_argument("--stop", type=int, help="frame index to stop before (default: the end)")
    p.add_argument("--stride", type=int, default=1, help="keep every N-th frame (default 1)")
    p.add_argument("--size", help="resize frames of a video file to WIDTHxHEIGHT, such as 832x480")
    p.add_argument("--eight-bit", action="store_true",
                   help="read a video file's frames through 8-bit RGB, as ComfyUI before 0.20 did (default: float at "
                        "the file's own bit depth, as ComfyUI 0.25 and later read them)")
    p.add_argument("--latents-per-step", type=int, default=engine.DEFAULT_LATENTS_PER_STEP,
                   help="latent frames produced per step after the first (each takes 4 pixel frames; default: "
                        "sized from the frame, within the memory budget)")
    overwrite(p)
    common(p)
    p.set_defaults(run=cmd_encode)

    p = sub.add_parser("plan", help="print what a decode would hold (windows, tiles, carries, peak) without running it")
    p.add_argument("vae", help="VAE .safetensors (as for decode)")
    p.add_argument("latent", nargs="?", help="the latent to plan for (as for decode), or give --frames and --size")
    p.add_argument("--frames", type=int, help="plan for a video of this many frames instead of a latent file")
    p.add_argument("--size", help="with --frames: the video's WIDTHxHEIGHT, such as 3840x2160")
    p.add_argument("--num-frames", type=int, help="as for decode")
    p.add_argument("--frames-per-step", type=int, default=engine.DEFAULT_FRAMES_PER_STEP, help="as for decode")
    p.add_argument("--decode-timestep", type=float, default=0.05, help="as for decode")
    p.add_argument("--device", default="auto", help="the device to plan for: auto, cpu, cuda or cuda:N (a CUDA "
                                                    "device need not be on this machine when --max-memory is given)")
    p.add_argument("--dtype", choices=list(DTYPES), help="working precision (default: bf16 on GPU, fp32 on CPU)")
    p.add_argument("--tile", type=_tile_arg, default="auto", help="as for decode")
    p.add_argument("--overlap", type=int, help="as for decode")
    p.add_argument("--max-memory", type=float, metavar="GB", help="the budget to plan for (default: what is free)")
    p.add_argument("-o", "--output", help=f"the output the decode would write: a video file ({', '.join(VIDEO_SUFFIXES)}), "
                                          "whose encoder's memory is counted, or .safetensors (the default), whose "
                                          "frames are; nothing is written")
    p.add_argument("--lossless", action="store_true", help="as for decode")
    p.set_defaults(run=cmd_plan)

    p = sub.add_parser("demo", help="encode and decode a generated clip with the bundled small trained VAE")
    p.add_argument("--frames", type=int, default=33, help="clip length in frames (default 33)")
    p.add_argument("--size", type=_demo_size_arg, default=(128, 128),
                   help="frame size in pixels: 128 (a square, the default) or WIDTHxHEIGHT such as 192x128")
    p.add_argument("--frames-per-step", type=int, default=engine.DEFAULT_FRAMES_PER_STEP,
                   help="latent frames decoded per step (default: sized from the frame, within the memory budget)")
    p.add_argument("-o", "--output", help="also save the decoded clip: .mp4 (.mkv, .mov, .webm) or .safetensors")
    video_output(p)
    overwrite(p)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars on stderr")
    p.set_defaults(run=cmd_demo)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the decode is, so its sink deletes the partial file as for Ctrl-C."""


def _terminate(signum, frame):
    raise Terminated()


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    _stderr_line(f"framestream: warning: {message}")


def _stderr_line(line: str) -> None:
    """One write per line: under torchrun every rank shares stderr, and print's two writes (text, then newline) can
    interleave two ranks' errors onto one line; a single short write to a pipe is atomic."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """The arguments; an unknown option is reported by the subcommand it was given to, whose help lists the
    options it takes."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        commands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = _parse(argv)
    except SystemExit as done:  # --help, --version or a one-line usage error: hand back its exit status
        return done.code if isinstance(done.code, int) else 1
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warning
            if distributed.launched_by_torchrun() and os.environ.get("RANK", "0") != "0":
                warnings.simplefilter("ignore")  # every rank would say the same: rank 0 speaks for them
            args.run(args)
    except FrameStreamError as err:
        _stderr_line(f"framestream: error: {err}")
        return 1
    except OUT_OF_MEMORY:
        _stderr_line("framestream: error: out of memory even with the smallest tiles; try --max-memory, --dtype bf16 or another --device")
        return 1
    except KeyboardInterrupt as stop:
        _stderr_line("framestream: interrupted; nothing was written")
        return 143 if isinstance(stop, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


if __name__ == "__main__":
    sys.exit(main())
