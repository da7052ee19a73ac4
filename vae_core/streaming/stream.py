"""Streams you push into: latents in as they are made, frames out as they finish (and frames in, latents out).

    stream = DecodeStream(vae, sink=VideoFileSink("clip.mp4", 16))
    for block in blocks:                  # the next latent frames of one video, [1, C, t, h, w] raw, t >= 1
        frames = stream.push(block)       # [n, H, W, 3] float32 on the CPU: the frames finished so far (n may be 0)
    stream.flush()                        # the rest; the stream is closed and the file complete

However a latent is cut into pushes, the frames are those one decode of the whole latent gives. A causal
decoder gives a latent frame's frames as soon as it is pushed; one that looks ahead through its convs (LTX) gives
them a few steps later and lets the rest out at ``flush()``; one that decodes in windows gives a window's frames
once the window's context has arrived. :func:`engine.decode` and :func:`engine.encode` are a stream given the
whole clip in one push. ``mark()`` and ``rewind(mark)`` take a stream back to an earlier point, so a piece can be
decoded again after it changed (an autoregressive model revising a block).

Each step is an explicit :class:`steps.DecodeStep` / :class:`steps.EncodeStep`; :meth:`_Stream._run` runs it,
commits its carries, or after running out of memory undoes it and runs it again with less.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import FrameStreamError, plural
from . import group_norm, memory, temporal
from .counter import Counter
from .inputs import check_frames, check_latent
from .model import CausalVideoVAE
from .outbound import Arriving, Outbound
from .runtime import OUT_OF_MEMORY
from .settings import Settings
from .sinks import Sink
from .carries import LayerRecord
from .state import StreamState
from .steps import DecodeStep, EncodeStep, gathering_passes, to_frames
from .tiler import Tiler


@dataclass(frozen=True)
class Mark:
    """A point of one stream, to rewind it to; it holds a copy of the stream's carries."""

    stream: int  # id() of its stream
    position: tuple[int, ...]  # the stream's counters (frames pushed, consumed, handed out; steps run)
    buffer: torch.Tensor | None  # what was pushed but not yet read by a step
    carries: dict[int, LayerRecord]  # the stream's committed carries, copied
    held: torch.Tensor | None  # a windowed decode's frames waiting to be cross-faded


class InFlight(NamedTuple):
    """A step's frames on their way out: where they go (``(first global index, frames)`` pieces, from the stitcher)
    and their copy to the host."""

    pieces: list[tuple[int, torch.Tensor]]
    arriving: Arriving


@dataclass
class Shared:
    """What the streams of one batch share when :func:`engine.decode` / :func:`engine.encode` runs one per video:
    one plan, one tiler (its tile size may shrink after running out of memory), one progress count."""

    work: memory.WorkPlan
    tiler: Tiler
    counter: Counter


class _Stream:
    """What decoding and encoding streams share: the sink, the plan and tiler (made at the first push, or
    shared), the carries, the loop that runs a step, the pushed frames not yet read, and marks."""

    direction = "decode"
    unit = "latent frames"

    def __init__(self, vae: CausalVideoVAE, sink: Sink | None, settings: Settings | None, length: int | None,
                 returns: bool, batch: int | None, shared: Shared | None, options: dict) -> None:
        self.vae, self.settings = vae, Settings.of(settings, options)
        self.sink, self.length = sink, length
        self.batch = batch or 0
        self._owns_sink = batch is None  # else video ``batch`` of a sink the caller started and finishes
        self._returns = returns
        self._shared = shared
        self.state: StreamState | None = None
        self.received = 0  # frames pushed
        self.consumed = 0  # frames read by the steps so far (a windowed decode: up to its next window)
        self.emitted = 0  # frames handed out
        self.steps = 0  # steps run
        self._buffer: torch.Tensor | None = None  # pushed frames not yet read, from global index _buffer_start
        self._buffer_start = 0
        self._closed = False

    @property
    def work(self) -> memory.WorkPlan | None:
        return None if self._shared is None else self._shared.work

    @property
    def tiler(self) -> Tiler:
        return self._shared.tiler

    @property
    def counter(self) -> Counter:
        return self._shared.counter

    def __enter__(self):
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None and not self._closed:
            self.flush()
        else:
            self.close()

    def close(self) -> None:
        """Ends the stream unfinished: a sink it owns deletes what it wrote (a partial file)."""
        if not self._closed:
            self._closed = True
            abort = getattr(self.sink, "abort", None)
            if self._owns_sink and abort is not None:
                abort()

    def flush(self) -> torch.Tensor:
        """Runs what is left, returns the last output (also written to the sink, which the stream finishes when it
        owns it: a video file is then complete) and closes the stream."""
        self._check_open("flush")
        if self.received == 0:
            raise FrameStreamError("nothing was pushed: a stream needs at least one frame before flush()")
        if self.length is not None and self.received < self.length:
            raise FrameStreamError(f"the stream was opened for frames={self.length} but {self.received} "
                                   f"{self.unit} were pushed before flush()")
        last = self._guarded(self._finish)
        if self._owns_sink and self.sink is not None:
            self._guarded(self.sink.result)
        self._closed = True
        return last

    def mark(self) -> Mark:
        """This point of the stream, to :meth:`rewind` to (a copy of the carries: their memory once more)."""
        self._check_open("mark")
        buffer = None if self._buffer is None else self._buffer.clone()
        carries = self.state.carries.snapshot() if self.state is not None else {}
        return Mark(id(self), (self.received, self.consumed, self.emitted, self.steps, self._buffer_start), buffer,
                    carries, self._held())

    def rewind(self, mark: Mark) -> None:
        """Back to ``mark``: the carries and the frames pushed and handed out are as they were; push again from
        there (changed frames or not). A sink that cannot take frames back (a video file) refuses when frames
        went into it since the mark."""
        self._check_open("rewind")
        if not isinstance(mark, Mark) or mark.stream != id(self):
            raise FrameStreamError("this mark belongs to another stream; a stream rewinds only to its own marks")
        emitted = mark.position[2]
        if emitted != self.emitted and self.sink is not None and not getattr(self.sink, "rewindable", False):
            raise FrameStreamError(f"{self.emitted - emitted} {self.unit.split()[-1]} went into the "
                                   f"{type(self.sink).__name__} since the mark, and it cannot take them back; rewind "
                                   "before output goes to a file, or stream into memory")
        self.received, self.consumed, self.emitted, self.steps, self._buffer_start = mark.position
        self._buffer = None if mark.buffer is None else mark.buffer.clone()
        if self.state is not None:
            self.state.carries.restore(mark.carries)
        self._set_held(mark.held)

    # -- for the subclasses -----------------------------------------------------------------------------------------

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise FrameStreamError(f"{what}() on a closed {self.direction} stream (it was flushed or closed); open a "
                                   "new stream")

    def _guarded(self, run):
        """``run()`` without autograd; a failure or interrupt closes the stream (a sink it owns drops its partial
        file)."""
        try:
            with torch.no_grad():  # not inference_mode: callers may still modify the returned tensors
                return run()
        except BaseException:
            self.close()
            raise

    def _setup(self, work: memory.WorkPlan, grid: tuple[int, int], total_steps: int) -> None:
        """The plan, the tiler and the progress count of a stream that runs alone."""
        self.settings.report_plan(work.describe(self.vae.spatial_ratio))
        tiler = Tiler(self.vae, grid, work.tiles, work.overlap_px, self.settings.on_retry, self.settings.carries,
                      self.settings.statistics_passes)
        self._shared = Shared(work, tiler, Counter(total_steps, self.settings.progress))
        self.counter.start()

    def _one_piece(self, work: memory.WorkPlan) -> None:
        """A plan of one step on the whole frame: the step sees the whole clip, so a clip-wide GroupNorm is an
        ordinary one (unless the caller gave statistics)."""
        if work.one_piece and not self._pooling_given:
            self._pooling = None

    def _append(self, piece: torch.Tensor) -> None:
        self._buffer = piece if self._buffer is None else torch.cat([self._buffer, piece], dim=2)
        self.received += piece.shape[2]

    def _take(self, start: int, stop: int) -> torch.Tensor:
        """Pushed frames ``[start, stop)`` (global indices)."""
        return self._buffer[:, :, start - self._buffer_start : stop - self._buffer_start]

    def _forget_before(self, index: int) -> None:
        """Drops the pushed frames before global ``index``: no later step reads them."""
        if self._buffer is not None and index > self._buffer_start:
            self._buffer = self._buffer[:, :, index - self._buffer_start :]
            self._buffer_start = index

    def _run(self, step) -> torch.Tensor:
        """One step, its carries committed; after running out of memory, undone and run again with smaller tiles
        (or the carries in host RAM) while that is possible."""
        while True:
            try:
                with self.state.active():
                    result = step.run(self.tiler, self.state)
            except OUT_OF_MEMORY:
                if not self.tiler.can_recover(self.state):
                    raise
            else:
                self.state.carries.commit()
                self.steps += 1
                return result
            self.tiler.recover(self.state, step.describe())  # outside except: its traceback pins the step's tensors

    def _output(self, start: int, chunk: torch.Tensor, out: list[torch.Tensor], count: int,
                returned: torch.Tensor | None = None) -> None:
        """Hands ``count`` frames (``chunk``, from index ``start``) to the sink and, if asked, to the caller (as
        ``returned``, where its layout differs)."""
        if count:
            if self.sink is not None:
                self.sink.write(self.batch, start, chunk)
            if self._returns:
                out.append(chunk if returned is None else returned)
        self.emitted = start + count

    def _held(self) -> torch.Tensor | None:
        return None

    def _set_held(self, held: torch.Tensor | None) -> None:
        pass

    def _finish(self):
        raise NotImplementedError


class DecodeStream(_Stream):
    """Latent frames of one video in, pixel frames out as they finish (see the module docstring).

    ``sink``: where the frames also go (a video file, a :class:`FrameSink`); None: they are only returned.
    ``frames``: the latent frames the stream will get, when known: the plan is then exact (a causal attention's
    carry is sized once), and models that cut a clip by its length (CogVideoX's frame batches) need it.
    ``returns=False``: ``push`` returns nothing, for callers that only need the sink. ``pooling``: statistics
    for GroupNorms over the clip that a caller gathered (see :mod:`group_norm`). ``settings`` / keyword
    options: as for :func:`engine.decode`. GroupNorms over the whole clip (HunyuanVideo, SVD) cannot decode a piece
    before the clip is complete: push the whole clip with ``last=True``, or pieces with ``statistics_passes=0``
    (running statistics; their error is measured in docs/hunyuan.md).
    """

    def __init__(self, vae: CausalVideoVAE, sink: Sink | None = None, settings: Settings | None = None, *,
                 frames: int | None = None, returns: bool = True, batch: int | None = None,
                 shared: Shared | None = None, pooling: group_norm.Pooling | None = None, **options) -> None:
        super().__init__(vae, sink, settings, frames, returns, batch, shared, options)
        self.passes = gathering_passes(vae, self.settings.statistics_passes, "decode")
        clip = vae.norms.of("decode") == "clip"
        self._pooling = pooling if pooling is not None else group_norm.Pooling() if clip else None
        self._pooling_given = pooling is not None
        self._planned: list[temporal.TemporalWindow] | None = None  # the steps, when the length was known up front
        self._stitcher = temporal.Stitcher()
        self._outbound = Outbound(vae.weight_device)
        self._in_flight: InFlight | None = None  # the last step's frames, not yet handed over
        self._grid: tuple[int, int] | None = None

    def push(self, latent: torch.Tensor, last: bool = False) -> torch.Tensor:
        """Takes the next latent frames ``[1, C, t, h, w]`` (raw space) and returns the pixel frames finished so
        far, ``[n, H, W, 3]`` float32 on the CPU (also written to the sink). ``last``: nothing more follows."""
        self._check_open("push")
        piece = self._checked(latent, last)
        return self._guarded(lambda: self._push(piece, last))

    def _checked(self, latent: torch.Tensor, last: bool) -> torch.Tensor:
        vae = self.vae
        if isinstance(latent, torch.Tensor) and latent.ndim == 4 and vae.latent_layout == "video":
            raise FrameStreamError(f"a pushed latent has shape {tuple(latent.shape)}; a stream of the {vae.family} "
                                   f"takes the next latent frames of one video, [1, {vae.latent_channels}, t, h, w]")
        piece = check_latent(vae, latent)
        if piece.shape[0] != 1:
            raise FrameStreamError(f"a pushed latent holds {piece.shape[0]} videos; a stream decodes one: push [1, C, "
                                   "t, h, w] (decode() takes a batch)")
        if self._grid is not None and tuple(piece.shape[-2:]) != self._grid:
            raise FrameStreamError(f"a pushed latent is {piece.shape[-1]}x{piece.shape[-2]} latent pixels but the "
                                   f"stream's first was {self._grid[1]}x{self._grid[0]}; all of a video's are the same")
        if self.length is not None and self.received + piece.shape[2] > self.length:
            raise FrameStreamError(f"{self.received + piece.shape[2]} latent frames pushed to a stream opened for "
                                   f"frames={self.length}")
        if self.passes and not (last and self.received == 0):
            raise FrameStreamError(
                f"the {vae.family}'s GroupNorms take their statistics over the whole clip, so no piece can be decoded "
                "before the clip is complete: push the whole latent with last=True, or stream with "
                "statistics_passes=0 (running statistics: close, not equal; docs/hunyuan.md)")
        if vae.streaming.needs_length and self.length is None and not (last and self.received == 0):
            raise FrameStreamError(f"the {vae.family} cuts a clip into steps by its length: open the stream with "
                                   "frames= (the latent frames it will get), or push the whole latent with last=True")
        return piece

    def _push(self, piece: torch.Tensor, last: bool) -> torch.Tensor:
        if self._grid is None:
            self._start(piece, self.received + piece.shape[2] if last else self.length)
        self._append(piece)
        if last:
            self.length = self.received
        out: list[torch.Tensor] = []
        if self.passes and self._pooling.frozen is None:
            self._gather_statistics()
        while (window := self._next_window(ending=False)) is not None:
            self._decode(window, out)
        self._hand_over(out)
        return _joined(out)

    def _start(self, piece: torch.Tensor, length: int | None) -> None:
        """The plan for ``length`` latent frames (when not known, for the first piece's), the tiler and the
        sink's start, at the first push."""
        self._grid, self.length = tuple(piece.shape[-2:]), length
        if length is not None:
            self.vae.check_length(length)
        if self._shared is None:
            shape = (1, piece.shape[1], length or piece.shape[2], *self._grid)
            work = memory.plan_decode(self.vae, shape, self.settings, sink=self.sink, whole=length is not None)
        else:
            work = self.work
        if length is not None:
            self.passes = gathering_passes(self.vae, self.settings.statistics_passes, "decode", work)
            self._one_piece(work)
        if self._shared is None:
            self._setup(work, self._grid, len(work.steps) * (1 + self.passes) if length is not None else 0)
        if length is not None:
            self._planned = self.work.steps
        if self._owns_sink and self.sink is not None:
            frames = self.vae.decoded_frames(length) if length is not None else None
            self.sink.start((1, frames, *self.work.frame, 3))

    def _next_window(self, ending: bool) -> temporal.TemporalWindow | None:
        """The next step whose latent frames are all here (at the end: the rest, and a delayed decoder's flush)."""
        if self._planned is not None:
            if self.steps < len(self._planned):
                window = self._planned[self.steps]
                if self._last_read(window) > self.received:
                    return None
                if window.streamed and window.start == self.length and self._stitcher.written >= self._expected():
                    return None  # a delayed decoder's flush steps, only while frames are still to come
                return window
            return self._flush_step() if ending else None
        if self.vae.streaming.one_stream:  # up to the plan's latent frames per step of what has arrived
            if self.consumed < self.received:
                stop = min(self.consumed + self.work.advance, self.received)
                span = temporal.pixel_span(self.vae, self.consumed, stop)
                return temporal.TemporalWindow(self.consumed, stop, (self.consumed, stop), span[0], span, 0,
                                               self.consumed == 0, streamed=True)
            return self._flush_step() if ending else None
        windows = self._windows_known_so_far(ending)
        return windows[self.steps] if self.steps < len(windows) else None

    def _last_read(self, window: temporal.TemporalWindow) -> int:
        """The end of the latent frames ``window`` reads: a window's whole-frame stages see ``shared_halo`` more."""
        if window.streamed:
            return window.stop
        stop = window.stop + self.vae.streaming.shared_halo
        return stop if self.length is None else min(self.length, stop)

    def _windows_known_so_far(self, ending: bool) -> list[temporal.TemporalWindow]:
        """A windowed decoder's windows: at the end those of the clip; before, those whose core and all the context
        after it have arrived, with a frame more (so another window follows them, as it does in the clip), once the
        clip is longer than one window can be."""
        vae = self.vae
        core, halo = vae.streaming.core, vae.streaming.halo
        if ending:
            return temporal.context_windows(vae, self.length, core, halo, vae.streaming.blend)
        cores = (self.received - halo - vae.streaming.shared_halo - 1) // core
        if cores <= 0 or self.received <= core + 2 * halo:
            return []
        longer = max(cores * core + halo + 1, core + 2 * halo + 1)
        return temporal.context_windows(vae, longer, core, halo, vae.streaming.blend)[:cores]

    def _flush_step(self) -> temporal.TemporalWindow | None:
        """A step feeding nothing, while a delayed decoder still holds frames back."""
        if not (self.vae.streaming.delayed and self._stitcher.written < self._expected()):
            return None
        span = temporal.pixel_span(self.vae, self.length, self.length)
        return temporal.TemporalWindow(self.length, self.length, (self.length, self.length), span[0], span, 0, False,
                                       streamed=True)

    def _expected(self) -> int:
        return self.vae.decoded_frames(self.length)

    def _decode(self, window: temporal.TemporalWindow, out: list[torch.Tensor] | None) -> None:
        """One step: its frames go out in order (``out`` None: a pass that only gathers statistics)."""
        if window.fresh_stream:
            self.state = self._fresh_state()
        first = window.start if window.streamed else max(0, window.start - self.vae.streaming.shared_halo)
        latent = self._take(first, self._last_read(window)).to(self.vae.weight_device, self.vae.weight_dtype)
        ending = not window.streamed or window.stop == self.length
        pixels = self._run(DecodeStep(self.vae, window, latent, first, ending))
        if out is None:
            self.counter.step()
            return
        arriving = self._outbound.send(to_frames(pixels))
        del pixels
        self._hand_over(out)  # the previous step's frames, while a GPU works on this step
        # a streamed step's frames follow the last ones as they are (placed now, read when handed over); windows
        # cross-fade their overlaps, which reads them
        frames = arriving.frames if window.streamed else arriving.wait()
        self._in_flight = InFlight(self._stitcher.add(window, frames), arriving)
        if not self._outbound.deferred:
            self._hand_over(out)
        self.consumed = window.stop if window.streamed else self._next_window_start()
        self._forget_before(self.consumed)

    def close(self) -> None:
        self._in_flight = None  # frames on their way out go nowhere now
        super().close()

    def _hand_over(self, out: list[torch.Tensor]) -> None:
        """The frames of the step that ran last, once they have arrived, to the sink (and the caller)."""
        if self._in_flight is None:
            return
        pieces, arriving = self._in_flight
        self._in_flight = None
        frames = arriving.wait()
        for start, chunk in pieces:
            self._output(start, chunk, out, chunk.shape[0])
        self.counter.step(frames[-1] if len(frames) else None)

    def _next_window_start(self) -> int:
        """The first latent frame the next window reads (its context and the whole-frame stages' halo included)."""
        vae = self.vae
        return max(0, self.steps * vae.streaming.core - vae.streaming.halo - vae.streaming.shared_halo)

    def _fresh_state(self) -> StreamState:
        """New carries (a window is a fresh clip; a windowed decode's windows keep adding to the clip's GroupNorm
        statistics)."""
        pace = (self.work.per_step, self.vae.temporal_ratio) if self.vae.streaming.delayed else None
        known = self.vae.streaming.causal or self.vae.streaming.needs_length
        state = self.tiler.new_state(self.length if known else None, pace, self._pooling)
        if self.state is not None and self._pooling is not None:
            state.carries.take_moments(self.state.carries)
        return state

    def _gather_statistics(self) -> None:
        """GroupNorms over the whole clip: passes over every step that only gather the clip's statistics, each
        refining the one before, before the pass that writes."""
        for _ in range(self.passes):
            self.state = None
            for window in self._planned:
                self._decode(window, None)
            self._pooling = group_norm.frozen_after(self.state)
            self.state, self.steps = None, 0

    def _finish(self) -> torch.Tensor:
        self.length = self.received
        self.vae.check_length(self.length)
        out: list[torch.Tensor] = []
        while (window := self._next_window(ending=True)) is not None:
            self._decode(window, out)
        self._hand_over(out)
        if self._stitcher.written < self._expected():
            raise RuntimeError(f"the {self.vae.family}'s decoder stopped giving frames at {self._stitcher.written} "
                               f"of {self._expected()}")
        if self._owns_sink:
            self.counter.finish()
        return _joined(out)

    def _held(self) -> torch.Tensor | None:
        held = self._stitcher.held
        return None if held is None else held.clone()

    def _set_held(self, held: torch.Tensor | None) -> None:
        self._stitcher.held = None if held is None else held.clone()
        self._stitcher.written = self.emitted


# frames beyond those pushed that an encode step of unknown length is compared against: more than any model's step
LOOK_AHEAD_FRAMES = 256


class EncodeStream(_Stream):
    """Frames of one video in (``[n, H, W, 3]`` in [0, 1], any ``n``), latent frames out as they finish.

    A causal encoder makes the first latent frame of the first frame, then one of every ``temporal_ratio``
    frames (``latents_per_step`` of them a step). At flush, frames that do not fill a last latent frame are left
    out, as the host does (with a warning). ``frames``: the pixel frames the stream will get, when known (models
    that cut a clip by its length, CogVideoX, need it). GroupNorms over the whole clip are not gathered over a
    stream (running statistics); :func:`engine.encode` of frames in memory gathers them.
    """

    direction = "encode"
    unit = "frames"

    def __init__(self, vae: CausalVideoVAE, sink: Sink | None = None, settings: Settings | None = None, *,
                 frames: int | None = None, returns: bool = True, batch: int | None = None,
                 shared: Shared | None = None, pooling: group_norm.Pooling | None = None, **options) -> None:
        super().__init__(vae, sink, settings, frames, returns, batch, shared, options)
        clip = vae.norms.of("encode") == "clip"
        self._pooling = pooling if pooling is not None else group_norm.Pooling() if clip else None
        self._pooling_given = pooling is not None
        self._size: tuple[int, int] | None = None
        self._planned: list[tuple[int, int]] | None = None  # the steps, when the length was known up front
        self._warned = False

    def push(self, frames: torch.Tensor, last: bool = False) -> torch.Tensor:
        """Takes the next frames and returns the latent frames finished so far, ``[1, C, t, h, w]`` float32 on the
        CPU (``t`` may be 0; also written to the sink). ``last``: nothing more follows."""
        self._check_open("push")
        piece = self._checked(frames, last)
        return self._guarded(lambda: self._push(piece, last))

    def _checked(self, frames: torch.Tensor, last: bool) -> torch.Tensor:
        if isinstance(frames, torch.Tensor) and frames.ndim == 4 and self._size is not None \
                and tuple(frames.shape[1:3]) != self._size:
            raise FrameStreamError(f"pushed frames are {frames.shape[2]}x{frames.shape[1]} px but the stream's first "
                                   f"were {self._size[1]}x{self._size[0]}; all of a video's are the same size")
        if self.vae.streaming.needs_length and self.length is None and not (last and self.received == 0):
            raise FrameStreamError(f"the {self.vae.family} cuts a clip into steps by its length: open the stream with "
                                   "frames= (the frames it will get), or push all frames with last=True")
        size = tuple(frames.shape[1:3]) if isinstance(frames, torch.Tensor) and frames.ndim == 4 else None
        piece = check_frames(self.vae, frames)  # cropped to whole latent pixels, as the host crops
        self._size = self._size or size
        return piece.permute(3, 0, 1, 2).unsqueeze(0)  # [1, 3, n, H, W]: along time, as the encoder reads it

    def _push(self, piece: torch.Tensor, last: bool) -> torch.Tensor:
        if self.state is None:
            self._start(piece, self.received + piece.shape[2] if last else self.length)
        self._append(piece)
        if last:
            self._known_length(self.received)
        out: list[torch.Tensor] = []
        self._advance(out)
        return _joined(out, dim=2)

    def _start(self, piece: torch.Tensor, length: int | None) -> None:
        height, width = piece.shape[-2:]
        r = self.vae.spatial_ratio
        if self._shared is None:
            work = memory.plan_encode(self.vae, length or piece.shape[2], height, width, self.settings)
            self._setup(work, (height // r, width // r), len(work.steps) if length is not None else 0)
        if length is not None:
            self._known_length(length)
            self._planned = self.work.steps
            self._one_piece(self.work)
        if self._owns_sink and self.sink is not None:
            latents = self.vae.latent_frames(length) if length is not None else None
            self.sink.start((1, self.vae.latent_channels, latents, height // r, width // r))
        self.state = self.tiler.new_state(None if length is None else self.vae.latent_frames(length),
                                          pooling=self._pooling)

    def _known_length(self, length: int) -> None:
        """The clip's end is known: frames that do not fill a last latent frame, and edge pixels that do not fill
        a latent pixel, are left out (the host drops them silently; this warns)."""
        if self.length == length and self._warned:
            return
        self.length, self._warned = length, True
        vae = self.vae
        kept, r = vae.pixel_frames(vae.latent_frames(length)), vae.spatial_ratio
        (height, width), (kept_h, kept_w) = self._size, (n // r * r for n in self._size)
        if (kept, kept_h, kept_w) != (length, height, width):
            warnings.warn(f"encoding {plural(kept, 'frame')} of {kept_w}x{kept_h} px out of {length} of {width}x{height}: the "
                          f"VAE takes {vae.frame_counts} frames of sides that are multiples of {r} px; the "
                          "rest is left out", stacklevel=2)

    def _next_span(self) -> tuple[int, int] | None:
        """The next step's pixel frames, when they are all here: the planned ones when the length was known up
        front; else the model's own cut (:meth:`CausalVideoVAE.encode_steps`) of the frames kept, or, before the
        end is known, of those pushed so far where more frames would not change it."""
        vae, per_step = self.vae, self.work.advance
        if self._planned is not None:
            spans = self._planned
        elif self.length is not None:
            spans = vae.encode_steps(vae.pixel_frames(vae.latent_frames(self.length)), per_step)
        else:  # the steps that later frames cannot change (the model's cut of a longer clip begins with them)
            known = vae.encode_steps(self.received, per_step)
            longer = vae.encode_steps(self.received + LOOK_AHEAD_FRAMES, per_step)
            spans = [span for span, _ in itertools.takewhile(lambda pair: pair[0] == pair[1], zip(known, longer))]
        if self.steps >= len(spans):
            return None
        span = spans[self.steps]
        return span if span[1] <= self.received else None

    def _advance(self, out: list[torch.Tensor]) -> None:
        while (span := self._next_span()) is not None:
            latent = self._run(EncodeStep(self.vae, self._take(*span), span))
            chunk = latent[0].float().cpu()  # [C, t, h, w], as sinks take a video's latent frames
            del latent
            self._output(self.emitted, chunk, out, chunk.shape[1], chunk[None])
            self.consumed = span[1]
            self._forget_before(self.consumed)
            self.counter.step()

    def _finish(self) -> torch.Tensor:
        self._known_length(self.received)
        out: list[torch.Tensor] = []
        self._advance(out)
        if self._owns_sink:
            self.counter.finish()
        return _joined(out, dim=2)


def _joined(pieces: list[torch.Tensor], dim: int = 0) -> torch.Tensor:
    if not pieces:
        return torch.empty(0)
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=dim)
