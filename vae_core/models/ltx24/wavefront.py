"""Each attention block of the decoder streamed along time on its own, so that the clip passes through the
blocks as a wavefront and memory holds a few frames per block, whatever the clip's length.

A block's output frame ``i`` reads its input frames ``i - r ... i + r`` (``r``
half its temporal kernel), the box shifted inward at the clip's ends. So a
block gives a frame once ``r`` frames after it have arrived, and at the clip's
end all the rest: the exact whole-clip result, however the frames arrive. Each
block carries, between steps (the stream's carries, so a failed step re-runs):

* ``frames``: the inputs it still reads, ``[B, C, t, h, w]`` (channels first, as
  carries are kept): those it has not given yet, and those their boxes reach.
  Their keys and values are made again each step: holding the inputs takes a
  third of the memory that holding keys and values for the boxes would;
* ``fed``: how many input frames it has had (its attention's ``fed``: how many
  output frames it has given).

At the clip's end a block could give all its waiting frames at once, and the
next block more still: the wavefront would become one whole-clip pass. So a
block gives at most about a step's worth of frames (:meth:`StreamState.let_out`)
and the clip's end flushes through in steps that feed nothing; the blocks after
one that still holds frames back do not see the end yet (:meth:`StreamState.hold_back`).

Without an active stream state, a call is a whole clip.
"""

from __future__ import annotations

import torch

from ...streaming.state import active_state
from .attention import neighbourhood_attention, window_starts
from .blocks import NABlock


def stream_block(block: NABlock, x: torch.Tensor, rate: int, modulation: torch.Tensor | None = None) -> torch.Tensor:
    """This step's new input frames ``[B, t, h, w, C]`` of ``block`` -> the output frames it gives now; ``rate``:
    its stage's frames per latent frame."""
    state = active_state()
    ending = state is None or state.ending
    fed = fed_so_far(state, block)  # input frames so far: the clip's number of x[:, 0]
    given = fed_so_far(state, block.attn)  # output frames so far: the clip's number of the next
    held = _read(state, block, x)
    if held is not None:
        x = torch.cat([held, x], dim=1)
    arrived = fed + x.shape[1] - (held.shape[1] if held is not None else 0)
    first = arrived - x.shape[1]  # the clip's number of x[:, 0]
    radius, kernel = block.kernel[0] // 2, block.kernel[0]
    ready = arrived if ending else (arrived - radius if arrived >= kernel else 0)
    count = ready - given
    if state is not None and state.pace is not None:
        count = state.let_out(block, rate, count)
    length = arrived if ending else None
    out = x[:, :0]
    if count > 0:
        k, v = block.attn.keys_values(block.before_attention(x, modulation), first)
        queries = x[:, given - first : given - first + count]
        q = block.attn.queries(block.before_attention(queries, modulation), given)
        attended = neighbourhood_attention(q, k, v, block.kernel, given, first, length)
        out = block.after_attention(queries, attended, modulation)
    if ending and given + count < arrived:
        state.hold_back()  # the blocks after this one have not reached the clip's end yet
    if state is not None:
        # the inputs later frames still read: theirs, and the keys their boxes can reach (while the clip goes on,
        # the last frames')
        following = given + count
        if ending:
            keep = int(window_starts(torch.tensor([following]), kernel, length))
        else:  # a box starts at most ``radius`` before its frame, or ``kernel`` before the clip's end
            keep = max(0, min(following - radius, arrived - kernel))
        _write(state, block, x[:, keep - first :])
        state.carries.writing(block).fed = arrived
        state.carries.writing(block.attn).fed = given + count
    return out


def fed_so_far(state, layer: torch.nn.Module, this_step: bool = False) -> int:
    """How many frames ``layer`` has taken in before this step (with ``this_step``: also in it)."""
    if state is None:
        return 0
    written = state.carries.this_step(layer).fed if this_step else None
    return (written if written is not None else state.carries.earlier(layer).fed) or 0


def _read(state, block: NABlock, like: torch.Tensor) -> torch.Tensor | None:
    """The held inputs ``[B, t, h, w, C]`` (kept channels first), None before the block wrote any."""
    if state is None:
        return None
    carry = state.read_frames(block, like.movedim(-1, 1))
    if carry is None or carry.shape[2] == 0:
        return None
    return carry.movedim(1, -1)


def _write(state, block: NABlock, frames: torch.Tensor) -> None:
    state.write_frames(block, frames.movedim(-1, 1))
