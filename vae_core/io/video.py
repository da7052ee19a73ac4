"""Writing a video file one frame at a time, so memory stays flat however long the video is.

``VideoFileSink`` encodes decoded frames (and a sound beside them) as they stream out of the engine, with PyAV,
which ComfyUI already installs; reading is in :mod:`.video_reader`.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from fractions import Fraction

import numpy as np
import torch

from ..errors import FrameStreamError
from . import encoder_memory
from .audio import Sound, SoundTrack
from .background import Worker
from .files import atomic_path, check_writable
from .pyav import load_av

# The containers the encoder below is tested with, and the muxer each needs.
SUFFIXES = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
WEBM = "webm"  # takes VP9, not H.264
# frames a background encoder may have waiting: about a decode step's (a few latent frames), so that the next
# step runs while they are encoded
QUEUED_FRAMES = 16


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

    ``sound`` (a :class:`.audio.Sound`): a sound track beside the frames, AAC (Opus in ``.webm``), muxed as the
    frames arrive and as long as the sound, whatever the video's length. The frames are the same with or
    without it.

    ``background`` (the default): the frames are converted and encoded on a thread of their own while the
    decode goes on, up to ``QUEUED_FRAMES`` waiting (in :meth:`held_bytes`); ``write`` only rounds them to
    8 bits and hands them over. An encoder failure is raised by the next ``write`` or by ``result()``.

    Until ``result()`` the file is written under a hidden temporary name in the
    same folder (``.framestream-XXXXXXXX.mp4``, from ``files.atomic_path``) and
    moved into place, mode 0644, only when complete. ``abort()`` deletes it.
    After a run: ``frames`` written, ``fps``, and the file's ``width``/``height``.
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction, crf: int = 19, lossless: bool = False,
                 sound: Sound | None = None, background: bool = True) -> None:
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
        self.sound = sound
        self.frames = 0
        self.width = self.height = 0
        self.temp_path: str | None = None  # where the file is while it is being written
        self._per_video = self._total = 0
        self._pad = (0, 0)
        self._atomic = self._container = self._stream = self._scaler = self._track = None
        self._background, self._worker = background, None
        self._encoded = 0  # frames the encoder has taken (``frames``: those handed to the sink)
        self._done = False

    def start(self, shape: tuple[int, ...]) -> None:
        if self._atomic is not None or self._done:
            raise FrameStreamError("a VideoFileSink writes one video file; make a new sink for each run")
        if len(shape) != 5 or shape[-1] != 3:
            raise FrameStreamError(f"a VideoFileSink takes frames (B, T, H, W, 3); got shape {tuple(shape)}")
        videos, self._per_video, height, width, _ = shape
        # a stream of unknown length: one video, as many frames as come
        self._total = None if self._per_video is None else videos * self._per_video
        self._pad = (0, 0) if self.lossless else (height % 2, width % 2)
        self.height, self.width = height + self._pad[0], width + self._pad[1]
        av = load_av()
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
            if self.sound is not None:
                self._track = SoundTrack(self._container, self.sound, webm=self.format == WEBM)
            self._scaler = av.video.reformatter.VideoReformatter()  # one swscale context for the whole video
            if self._background:
                self._worker = Worker(self._encode, QUEUED_FRAMES, name="framestream-video-encoder")
        except BaseException:
            self.abort()
            raise

    def write(self, batch: int, start: int, chunk: torch.Tensor) -> None:
        if self._container is None:
            raise FrameStreamError("VideoFileSink.write needs start() first, and cannot follow result() or abort()")
        per_video = self._per_video or self.frames + 1
        if batch * per_video + start != self.frames:
            raise FrameStreamError(
                f"a video file is written in order: expected frame {self.frames % max(per_video, 1)} of video"
                f" {self.frames // max(per_video, 1)}, got frame {start} of video {batch}"
            )
        expected = (self.height - self._pad[0], self.width - self._pad[1], 3)
        if chunk.dim() != 4 or tuple(chunk.shape[1:]) != expected:
            raise FrameStreamError(f"frames must be [t, {', '.join(map(str, expected))}] as announced; got {list(chunk.shape)}")
        if self._total is not None and self.frames + chunk.shape[0] > self._total:
            raise FrameStreamError(f"more frames than the {self._total} announced to start()")
        for image in chunk.detach():
            # Rounded on the frame's own device, a frame at a time: a quarter of the bytes cross to the CPU and no
            # float copy of the whole chunk is made beside the engine's.
            pixels = image.float().mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).cpu().numpy()
            if any(self._pad):
                pixels = np.pad(pixels, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode="edge")
            if self._worker is not None:
                self._worker.put(pixels)
            else:
                self._encode(pixels)
            self.frames += 1

    def _encode(self, pixels: np.ndarray) -> None:
        """One 8-bit RGB frame into the file (and the sound up to its end), on the encoder's thread."""
        frame = load_av().VideoFrame.from_ndarray(pixels, format="rgb24")
        if not self.lossless:
            frame = self._scaler.reformat(frame, format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
        frame.pts, frame.time_base = self._encoded, 1 / self.rate
        self._container.mux(self._stream.encode(frame))
        self._encoded += 1
        if self._track is not None:
            self._track.write_until(self._encoded / self.rate)

    def held_bytes(self, height: int, width: int, frames: int) -> int:
        """RAM the encoder will hold while ``frames`` frames of ``height`` x ``width`` go into this file."""
        codec = encoder_memory.H264_RGB if self.lossless else encoder_memory.VP9 if self.format == WEBM \
            else encoder_memory.H264
        pad = (0, 0) if self.lossless else (height % 2, width % 2)
        queued = QUEUED_FRAMES * (height + pad[0]) * (width + pad[1]) * 3 if self._background else 0
        return codec.held_bytes((height + pad[0]) * (width + pad[1]), frames) + queued

    def result(self) -> str:
        """Finishes the file and moves it into place; returns its path."""
        if self._done:
            return self.path
        if self._container is None:
            raise FrameStreamError("VideoFileSink.result needs start() and the frames first (or it was aborted)")
        try:
            if self._total is not None and self.frames != self._total:
                raise FrameStreamError(f"only {self.frames} of {self._total} frames arrived; the video was not kept")
            if self._worker is not None:
                worker, self._worker = self._worker, None
                worker.close()  # every frame handed over is encoded (or its failure raised)
            self._container.mux(self._stream.encode(None))  # what the encoder still holds back
            if self._track is not None:
                self._track.finish()
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
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()  # before the file closes under it
        container, self._container = self._container, None
        atomic, self._atomic = self._atomic, None
        try:
            if container is not None:
                with contextlib.suppress(load_av().FFmpegError, OSError):  # a half-written file may not finish; it goes anyway
                    container.close()
        finally:
            if atomic is not None:
                with contextlib.suppress(OSError):  # could not delete it; nothing more to do here
                    atomic.__exit__(_Aborted, _Aborted(), None)
