"""Reading a video file in chunks of frames for the encoder, converted exactly as the host reads it.

ComfyUI's ``VideoFromFile`` has changed how it turns decoded frames into floats, and FrameStream's file encoder
must give what Load Video -> VAE Encode gives in the host that runs it. :class:`FrameReading` names the choices;
:data:`FULL_PRECISION` is today's host (and the CLI's default), :data:`EIGHT_BIT` the hosts before 0.20.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import FrameStreamError
from .pyav import load_av, open_media

# formats the host reads through 8-bit RGB even at full precision (already 8-bit and full range)
EIGHT_BIT_FULL_RANGE = ("yuvj420p", "yuvj422p", "yuvj444p", "rgb24", "rgba", "pal8")


@dataclass(frozen=True)
class FrameReading:
    """How decoded frames become float RGB in [0, 1].

    ``float_frames``: through 32-bit float planar RGB at the file's own bit depth (ComfyUI 0.20+), else through
    8-bit RGB / 255 (0.3.x to 0.19). ``eight_bit_as_bytes``: the formats of :data:`EIGHT_BIT_FULL_RANGE` still
    through 8-bit RGB (0.21+). ``align``: a width that is not a multiple of this is padded (edges smeared) before
    the float conversion and cropped after, which makes swscale's result independent of the row alignment (0.25+;
    0 = never). ``rotate``: frames turned by the file's display rotation (0.21+).
    """

    float_frames: bool = True
    eight_bit_as_bytes: bool = True
    align: int = 32
    rotate: bool = True


FULL_PRECISION = FrameReading()
EIGHT_BIT = FrameReading(float_frames=False, eight_bit_as_bytes=False, align=0, rotate=False)


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    width: int  # as the frames come out (after the display rotation, when the reading applies it)
    height: int
    rotation: int = 0  # degrees, counter-clockwise, from the file's display matrix


def _open(path: str):
    """The container and its first video stream, or one clear error."""
    container = open_media(path)
    if not container.streams.video:
        kinds = ", ".join(sorted({s.type for s in container.streams})) or "no streams"
        container.close()
        raise FrameStreamError(f"{path} has no video stream (it holds: {kinds}); expected a video file")
    return container, container.streams.video[0]


def _rotation(container, stream) -> int:
    """The display rotation of the stream's first frame (0, 90, 180 or 270), then back to the start."""
    av = load_av()
    try:
        frame = next(container.decode(stream), None)
    except av.FFmpegError:
        frame = None
    container.seek(0)
    return int(round(getattr(frame, "rotation", 0) or 0)) % 360 if frame is not None else 0


def probe_video(path: str | os.PathLike, reading: FrameReading = FULL_PRECISION) -> VideoInfo:
    """Frame count, rate and size, decoding at most the first frame (for its rotation).

    The count comes from the header; containers without one (Matroska, WebM)
    are counted by reading the packets, which costs a pass over the file but no decoding.
    """
    path = os.fspath(path)
    container, stream = _open(path)
    with container:
        rotation = _rotation(container, stream) if reading.rotate else 0
        frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        width, height = stream.codec_context.width, stream.codec_context.height
        if rotation in (90, 270):
            width, height = height, width
        return VideoInfo(frames, float(rate) if rate else 0.0, width, height, rotation)


class _Converter:
    """One frame at a time to ``[H, W, 3]`` float32, as ``reading`` says, resized to ``size`` when given."""

    def __init__(self, reading: FrameReading, size: tuple[int, int] | None, rotation: int) -> None:
        self.reading, self.size, self.rotation = reading, size, rotation
        self.format = self._scale = None
        self._scaler = load_av().video.reformatter.VideoReformatter()  # one swscale context for the whole video
        self._aligner = None

    def __call__(self, frame) -> np.ndarray:
        if self.format is None:  # fixed by the first frame, as the host does
            self.format, self._scale = self._target(frame)
        if self.size is not None:  # swscale resizes and converts in one pass; its bicubic filter antialiases
            width, height = self.size if self.rotation not in (90, 270) else self.size[::-1]
            image = self._scaler.reformat(frame, width=width, height=height, format=self.format,
                                          interpolation="BICUBIC").to_ndarray()
        elif self._scale is None and self.reading.align and frame.width % self.reading.align:
            image = self._aligned(frame)
        else:
            image = frame.to_ndarray(format=self.format)
        if self.rotation:
            image = np.rot90(image, k=self.rotation // 90, axes=(0, 1))
        image = image[..., :3]  # the alpha channel, where there is one, is not part of the frame
        return image.astype(np.float32) / 255 if self._scale is not None else np.ascontiguousarray(image)

    def _target(self, frame) -> tuple[str, float | None]:
        """The format to convert to, and the divisor that makes it [0, 1] (None: already float)."""
        name = frame.format.name
        alpha = name == "pal8" or any(component.is_alpha for component in frame.format.components)
        if not self.reading.float_frames or (self.reading.eight_bit_as_bytes and name in EIGHT_BIT_FULL_RANGE):
            return ("rgba" if alpha and self.reading.eight_bit_as_bytes else "rgb24"), 255.0
        return ("gbrapf32le" if alpha else "gbrpf32le"), None

    def _aligned(self, frame) -> np.ndarray:
        """The host's conversion at unaligned widths: pad both sides to the alignment, smear the border, crop."""
        av, step = load_av(), self.reading.align
        if self._aligner is None:
            padded_w, padded_h = -(-frame.width // step) * step, -(-frame.height // step) * step
            graph = av.filter.Graph()
            source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                      time_base=frame.time_base)
            pad = graph.add("pad", f"{padded_w}:{padded_h}:0:0")
            fill = graph.add("fillborders", f"left=0:right={padded_w - frame.width}:top=0:"
                                            f"bottom={padded_h - frame.height}:mode=smear")
            sink = graph.add("buffersink")
            source.link_to(pad)
            pad.link_to(fill)
            fill.link_to(sink)
            graph.configure()
            self._aligner = (graph, source, sink)
        self._aligner[1].push(frame)
        return self._aligner[2].pull().to_ndarray(format=self.format)[: frame.height, : frame.width]


class VideoReader:
    """What ``read_video`` returns: an iterator of frame chunks that knows in advance what it will yield.

    ``frames``: how many frames the selection holds (by the header's count),
    ``width``/``height``: their size, ``fps``: their rate (the source's / stride).
    """

    def __init__(self, path: str, info: VideoInfo, selection: range, size: tuple[int, int] | None,
                 sizes: tuple[int, ...], reading: FrameReading) -> None:
        self.path, self.selection, self.size, self.sizes, self.reading = path, selection, size, sizes, reading
        self.frames = len(selection)
        self.width, self.height = size or (info.width, info.height)
        self.fps = info.fps / selection.step
        self._rotation = info.rotation
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
        convert = _Converter(self.reading, self.size, self._rotation)
        with container:
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index >= stop:
                    break
                if index < first or (index - first) % step:
                    continue
                kept.append(convert(frame))
                if len(kept) == wanted:
                    yield torch.from_numpy(np.stack(kept))
                    kept, wanted = [], next(sizes)
        if kept:
            yield torch.from_numpy(np.stack(kept))


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def read_video(
    path: str | os.PathLike,
    start: int = 0,
    stop: int | None = None,
    stride: int = 1,
    size: tuple[int, int] | None = None,
    chunk: int | Iterable[int] = 1,
    reading: FrameReading = FULL_PRECISION,
) -> VideoReader:
    """Frames ``start, start+stride, ...`` before ``stop`` as float32 CPU chunks ``[n, H, W, 3]`` in [0, 1].

    Decodes one frame at a time, so only the current chunk is ever in memory.
    ``stop`` past the end means the end, as in slicing. ``size=(width, height)``
    resizes each frame. ``chunk`` is the number of frames per chunk, or a
    sequence whose last entry repeats: ``(1, 4)`` gives 1 frame, then 4 at a
    time, as the causal encoder consumes them; the last chunk may be shorter.
    ``reading``: how frames become floats (:class:`FrameReading`; the host's current way by default).
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
    info = probe_video(path, reading)
    if start >= info.frames:
        raise FrameStreamError(f"start={start} is beyond the end of {path}, which has {info.frames} frames (0 to {info.frames - 1})")
    selection = range(start, info.frames if stop is None else min(stop, info.frames), stride)
    return VideoReader(path, info, selection, size, sizes, reading)
