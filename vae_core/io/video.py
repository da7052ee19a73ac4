"""Video files in and out, one frame at a time, so memory stays flat however long the video is.

``VideoFileSink`` encodes decoded frames as they stream out of the engine;
``read_video`` decodes a file in chunks for the encoder. Both use PyAV (which
ComfyUI already installs); it is imported only when a video is touched, so the
rest of FrameStream works without it.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch

from ..errors import FrameStreamError
from . import encoder_memory
from .files import atomic_path, check_writable

# The containers the encoder below is tested with, and the muxer each needs.
SUFFIXES = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
WEBM = "webm"  # takes VP9, not H.264


def _av():
    try:
        import av
    except ImportError:
        raise FrameStreamError("video files need PyAV: pip install av (ComfyUI already ships it)") from None
    return av


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _rate(fps) -> Fraction:
    """The frame rate as the exact fraction containers store.

    Floats are snapped to the nearest fraction with a denominator up to 1001,
    which makes every common rate exact (24, 25, 12.5, 29.97, 23.976 and
    30000/1001 given as a float), so timestamps do not drift.
    """
    if isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps) or fps <= 0:
        raise FrameStreamError(f"fps must be a positive finite number, such as 16, 24 or 30000/1001; got {fps!r}")
    rate = Fraction(fps).limit_denominator(1001)
    if rate <= 0:
        raise FrameStreamError(f"fps {fps!r} is too small to store; expected at least 1/1001 frame per second")
    return rate


class _Aborted(Exception):
    """Thrown into ``atomic_path`` so it deletes its temporary file instead of moving it into place."""


class VideoFileSink:
    """A sink that encodes frames into a video file as they arrive, never holding the video in memory.

    Default: H.264 (libx264, yuv420p, ``crf``; 19 is visually near-lossless),
    tagged BT.709 limited range, which every player and browser plays; in a
    ``.webm``, VP9 at the same ``crf`` (constant quality).
    ``lossless=True``: libx264rgb with qp 0, which stores the 8-bit RGB
    values themselves (no YUV conversion, no chroma subsampling), so decoding
    gives back exactly the frames written, rounded to uint8. Players built on
    FFmpeg (ffmpeg, PyAV, VLC, mpv) read it; browsers (so also the ComfyUI
    preview) and QuickTime do not.

    The videos of a batch go one after another into the one file, like the
    host's IMAGE batch. Frames are rounded to the nearest uint8.
    yuv420p needs even sizes, so an odd height or width is padded by
    repeating the last row or column (the file is then one pixel larger);
    lossless files keep any size.

    Until ``result()`` the file is written under a hidden temporary name in the
    same folder (``.framestream-XXXXXXXX.mp4``, from ``files.atomic_path``) and
    moved into place, mode 0644, only when complete. ``abort()`` deletes it.
    After a run: ``frames`` written, ``fps``, and the file's ``width``/``height``.
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction, crf: int = 19, lossless: bool = False) -> None:
        self.path = os.fspath(path)
        suffix = os.path.splitext(self.path)[1].lower()
        if suffix not in SUFFIXES:
            raise FrameStreamError(f"video output must end in {', '.join(SUFFIXES)}; got {self.path!r}")
        self.rate = _rate(fps)
        self.fps = float(self.rate)
        if not _is_int(crf) or not 0 <= crf <= 51:
            raise FrameStreamError(f"crf must be a whole number from 0 (best) to 51 (smallest file); got {crf!r}")
        if os.path.isdir(self.path):
            raise FrameStreamError(f"video output {self.path} is a folder; expected a file name ending in {suffix}")
        check_writable(self.path)
        self.crf, self.lossless, self.format = int(crf), bool(lossless), SUFFIXES[suffix]
        if self.lossless and self.format == WEBM:
            raise FrameStreamError(f"lossless video is H.264 RGB, which .webm cannot hold; write .mp4, .mkv or .mov: "
                                   f"{self.path}")
        self.frames = 0
        self.width = self.height = 0
        self.temp_path: str | None = None  # where the file is while it is being written
        self._per_video = self._total = 0
        self._pad = (0, 0)
        self._atomic = self._container = self._stream = self._scaler = None
        self._done = False

    def start(self, shape: tuple[int, ...]) -> None:
        if self._atomic is not None or self._done:
            raise FrameStreamError("a VideoFileSink writes one video file; make a new sink for each run")
        if len(shape) != 5 or shape[-1] != 3:
            raise FrameStreamError(f"a VideoFileSink takes frames (B, T, H, W, 3); got shape {tuple(shape)}")
        videos, self._per_video, height, width, _ = shape
        self._total = videos * self._per_video
        self._pad = (0, 0) if self.lossless else (height % 2, width % 2)
        self.height, self.width = height + self._pad[0], width + self._pad[1]
        av = _av()
        self._atomic = atomic_path(self.path)
        self.temp_path = self._atomic.__enter__()
        try:
            self._container = av.open(self.temp_path, "w", format=self.format)
            if self.lossless:
                stream = self._container.add_stream("libx264rgb", rate=self.rate, options={"qp": "0"})
                stream.pix_fmt = "rgb24"
            else:
                codec, options = ("libvpx-vp9", {"crf": str(self.crf), "b": "0", "row-mt": "1"}) \
                    if self.format == WEBM else ("libx264", {"crf": str(self.crf)})
                stream = self._container.add_stream(codec, rate=self.rate, options=options)
                stream.pix_fmt = "yuv420p"
                context = stream.codec_context  # tags matching the conversion in write(), so players use the same matrix
                context.colorspace = context.color_primaries = context.color_trc = 1  # BT.709
                context.color_range = 1  # limited ("MPEG") range
            stream.width, stream.height = self.width, self.height
            stream.codec_context.thread_type = "SLICE"  # no frames in flight per thread: see encoder_memory
            self._stream = stream
            self._scaler = av.video.reformatter.VideoReformatter()  # one swscale context for the whole video
        except BaseException:
            self.abort()
            raise

    def write(self, batch: int, start: int, chunk: torch.Tensor) -> None:
        if self._container is None:
            raise FrameStreamError("VideoFileSink.write needs start() first, and cannot follow result() or abort()")
        if batch * self._per_video + start != self.frames:
            raise FrameStreamError(
                f"a video file is written in order: expected frame {self.frames % max(self._per_video, 1)} of video"
                f" {self.frames // max(self._per_video, 1)}, got frame {start} of video {batch}"
            )
        expected = (self.height - self._pad[0], self.width - self._pad[1], 3)
        if chunk.dim() != 4 or tuple(chunk.shape[1:]) != expected:
            raise FrameStreamError(f"frames must be [t, {', '.join(map(str, expected))}] as announced; got {list(chunk.shape)}")
        if self.frames + chunk.shape[0] > self._total:
            raise FrameStreamError(f"more frames than the {self._total} announced to start()")
        av = _av()
        for image in chunk.detach():
            # Rounded on the frame's own device, a frame at a time: a quarter of the bytes cross to the CPU and no
            # float copy of the whole chunk is made beside the engine's.
            pixels = image.float().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).cpu().numpy()
            if any(self._pad):
                pixels = np.pad(pixels, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            if not self.lossless:
                frame = self._scaler.reformat(frame, format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            frame.pts, frame.time_base = self.frames, 1 / self.rate
            self._container.mux(self._stream.encode(frame))
            self.frames += 1

    def held_bytes(self, height: int, width: int, frames: int) -> int:
        """RAM the encoder will hold while ``frames`` frames of ``height`` x ``width`` go into this file."""
        codec = encoder_memory.H264_RGB if self.lossless else encoder_memory.VP9 if self.format == WEBM \
            else encoder_memory.H264
        pad = (0, 0) if self.lossless else (height % 2, width % 2)
        return codec.held_bytes((height + pad[0]) * (width + pad[1]), frames)

    def result(self) -> str:
        """Finishes the file and moves it into place; returns its path."""
        if self._done:
            return self.path
        if self._container is None:
            raise FrameStreamError("VideoFileSink.result needs start() and the frames first (or it was aborted)")
        try:
            if self.frames != self._total:
                raise FrameStreamError(f"only {self.frames} of {self._total} frames arrived; the video was not kept")
            self._container.mux(self._stream.encode(None))  # what the encoder still holds back
            self._container.close()
            self._container = None
            atomic, self._atomic = self._atomic, None
            atomic.__exit__(None, None, None)
        except BaseException:
            self.abort()
            raise
        self._done = True
        return self.path

    def abort(self) -> None:
        """Closes and deletes the unfinished file. Safe at any time and more than once; a finished file stays."""
        container, self._container = self._container, None
        atomic, self._atomic = self._atomic, None
        try:
            if container is not None:
                with contextlib.suppress(_av().FFmpegError, OSError):  # a half-written file may not finish; it goes anyway
                    container.close()
        finally:
            if atomic is not None:
                with contextlib.suppress(OSError):  # could not delete it; nothing more to do here
                    atomic.__exit__(_Aborted, _Aborted(), None)


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int
    height: int


def _open(path: str):
    """The container and its first video stream, or one clear error."""
    if not os.path.isfile(path):
        raise FrameStreamError(f"video file not found: {path}")
    av = _av()
    try:
        container = av.open(path)
    except (av.FFmpegError, OSError) as err:
        reason = getattr(err, "strerror", None) or err
        raise FrameStreamError(f"{path} is not a readable video file ({reason}); expected a video such as .mp4, .mkv, .mov or .webm") from None
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        container.close()
        raise FrameStreamError(f"{path} has no video stream (it holds: {kinds}); expected a video file")
    return container, container.streams.video[0]


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, rate and size without decoding.

    The count comes from the header; containers without one (Matroska, WebM)
    are counted by reading the packets, which costs a pass over the file but no decoding.
    """
    path = os.fspath(path)
    container, stream = _open(path)
    with container:
        frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        return VideoInfo(frames, float(rate) if rate else 0.0, stream.codec_context.width, stream.codec_context.height)


class VideoReader:
    """What ``read_video`` returns: an iterator of frame chunks that knows in advance what it will yield.

    ``frames``: how many frames the selection holds (by the header's count),
    ``width``/``height``: their size, ``fps``: their rate (the source's / stride).
    """

    def __init__(self, path: str, info: VideoInfo, selection: range, size: tuple[int, int] | None, sizes: tuple[int, ...]) -> None:
        self.path, self.selection, self.size, self.sizes = path, selection, size, sizes
        self.frames = len(selection)
        self.width, self.height = size or (info.width, info.height)
        self.fps = info.fps / selection.step
        self._chunks = self._decode()

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()

    def _chunk_sizes(self) -> Iterator[int]:
        yield from self.sizes
        while True:
            yield self.sizes[-1]

    def _decode(self) -> Iterator[torch.Tensor]:
        # Decodes from the first frame rather than seeking: frame-accurate seeking
        # is unreliable across codecs, and skipped frames are decoded but never converted.
        first, stop, step = self.selection.start, self.selection.stop, self.selection.step
        sizes, kept = self._chunk_sizes(), []
        wanted = next(sizes)
        container, stream = _open(self.path)
        scaler = _av().video.reformatter.VideoReformatter()  # one swscale context for the whole video
        with container:
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index >= stop:
                    break
                if index < first or (index - first) % step:
                    continue
                # swscale resizes and converts to RGB in one pass; its bicubic filter
                # widens when shrinking, so downscaling is antialiased.
                rgb = scaler.reformat(frame, width=self.width, height=self.height, format="rgb24", interpolation="BICUBIC")
                kept.append(rgb.to_ndarray())
                if len(kept) == wanted:
                    yield _to_float(kept)
                    kept, wanted = [], next(sizes)
        if kept:
            yield _to_float(kept)


def _to_float(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).to(torch.float32).div_(255)


def read_video(
    path: str | os.PathLike,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
    size: tuple[int, int] | None = None,
    chunk: int | Iterable[int] = 1,
) -> VideoReader:
    """Frames ``start, start+stride, ...`` before ``stop`` as float32 CPU chunks ``[n, H, W, 3]`` in [0, 1].

    Decodes one frame at a time, so only the current chunk is ever in memory.
    ``stop`` past the end means the end, as in slicing. ``size=(width, height)``
    resizes each frame. ``chunk`` is the number of frames per chunk, or a
    sequence whose last entry repeats: ``(1, 4)`` gives 1 frame, then 4 at a
    time, as the causal encoder consumes them; the last chunk may be shorter.
    Arguments are checked now, not when iteration starts.
    """
    path = os.fspath(path)
    for name, value, least in (("start", start, 0), ("stride", stride, 1)):
        if not _is_int(value) or value < least:
            raise FrameStreamError(f"{name} must be a whole number of at least {least}; got {value!r}")
    if stop is not None and (not _is_int(stop) or stop <= start):
        raise FrameStreamError(f"stop must be a frame index after start={start} (or None for the end); got {stop!r}")
    if size is not None:
        if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(_is_int(v) and v > 0 for v in size):
            raise FrameStreamError(f"size must be (width, height), two positive whole numbers; got {size!r}")
        size = (int(size[0]), int(size[1]))
    sizes = (chunk,) if _is_int(chunk) else tuple(chunk) if isinstance(chunk, Iterable) else ()
    if not sizes or not all(_is_int(n) and n > 0 for n in sizes):
        raise FrameStreamError(f"chunk must be a positive number of frames or a sequence of them, such as (1, 4); got {chunk!r}")
    info = probe_video(path)
    if start >= info.frames:
        raise FrameStreamError(f"start={start} is beyond the end of {path}, which has {info.frames} frames (0 to {info.frames - 1})")
    selection = range(start, info.frames if stop is None else min(stop, info.frames), stride)
    return VideoReader(path, info, selection, size, sizes)
