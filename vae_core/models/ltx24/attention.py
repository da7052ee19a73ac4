"""Neighbourhood attention over a stream's frames, and the rotary positions it reads.

The decoder's attention is NATTEN's ``na3d``: each query attends a box of
``kernel`` keys around it, the box shifted inward at the grid's borders so that
it always holds ``min(kernel, length)`` keys per axis. Along time a stream holds
only the frames near the queries, so the box is computed in the clip's frame
numbers and the clip's end is known only once it has arrived (``length``).

The boxes are cut into query tiles: each tile attends the union of its queries'
boxes (a slice of the keys) with a mask, one fused attention call per tile.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

QUERY_TILE = 8  # query rows and columns per attention call: a smaller tile wastes fewer masked keys, a larger one
# makes fewer calls


def window_starts(index: torch.Tensor, kernel: int, length: int | None) -> torch.Tensor:
    """The first key of each query's box along one axis; ``length`` None: the axis has not ended yet (the box is
    shifted only at its start)."""
    start = index - kernel // 2
    if length is None:
        return start.clamp(min=0)
    return start.clamp(0, length - min(kernel, length))


def neighbourhood_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, kernel: tuple[int, int, int],
                            first_query: int, first_key: int, length: int | None) -> torch.Tensor:
    """Attention of each query over its box of keys.

    ``q``: ``[B, tq, H, W, heads, d]`` for frames ``first_query ...`` of the clip, already scaled; ``k``, ``v``:
    ``[B, tk, H, W, heads, d]`` for frames ``first_key ...`` (every frame the queries' boxes reach); ``length``:
    the clip's frames at this stage (None while more may come). Returns ``[B, tq, H, W, heads * d]``.
    """
    batch, frames, height, width, heads, dim = q.shape
    device = q.device
    kt, kh, kw = min(kernel[0], length or kernel[0]), min(kernel[1], height), min(kernel[2], width)
    t_start = window_starts(torch.arange(first_query, first_query + frames, device=device), kernel[0], length)
    t_start = t_start - first_key
    key_frames = torch.arange(k.shape[1], device=device)
    t_mask = (key_frames >= t_start[:, None]) & (key_frames < t_start[:, None] + kt)  # [tq, tk]
    t0, t1 = int(t_start.min()), int(t_start.max()) + kt
    t_mask = t_mask[:, t0:t1]
    h_start = window_starts(torch.arange(height, device=device), kh, height)
    w_start = window_starts(torch.arange(width, device=device), kw, width)
    out = q.new_empty(batch, frames, height, width, heads, dim)
    for top in range(0, height, QUERY_TILE):
        rows = slice(top, min(top + QUERY_TILE, height))
        r0, r1 = int(h_start[rows].min()), int(h_start[rows].max()) + kh
        h_mask = _axis_mask(h_start[rows], r0, r1, kh)
        for left in range(0, width, QUERY_TILE):
            cols = slice(left, min(left + QUERY_TILE, width))
            c0, c1 = int(w_start[cols].min()), int(w_start[cols].max()) + kw
            w_mask = _axis_mask(w_start[cols], c0, c1, kw)
            mask = (t_mask[:, None, None, :, None, None] & h_mask[None, :, None, None, :, None]
                    & w_mask[None, None, :, None, None, :])
            mask = mask.reshape(frames * h_mask.shape[0] * w_mask.shape[0], -1)
            queries = _heads_first(q[:, :, rows, cols])
            keys, values = (_heads_first(x[:, t0:t1, r0:r1, c0:c1]) for x in (k, v))
            o = F.scaled_dot_product_attention(queries, keys, values, attn_mask=mask, scale=1.0)
            tile = (batch, frames, h_mask.shape[0], w_mask.shape[0], heads, dim)
            out[:, :, rows, cols] = o.transpose(1, 2).reshape(tile)
    return out.flatten(-2)


def _axis_mask(starts: torch.Tensor, first: int, stop: int, kernel: int) -> torch.Tensor:
    """``[queries, stop - first]``: which keys of the slice ``[first, stop)`` each query's box holds."""
    keys = torch.arange(first, stop, device=starts.device)
    return (keys >= starts[:, None]) & (keys < starts[:, None] + kernel)


def _heads_first(x: torch.Tensor) -> torch.Tensor:
    """``[B, t, h, w, heads, d]`` -> ``[B, heads, t * h * w, d]``."""
    return x.flatten(1, 3).transpose(1, 2)


# --- rotary positions: the head split into time, rows and columns, each rotating interleaved pairs


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """How many of a head's channels rotate with the frame, the row and the column (16, 24, 24 for 64)."""
    t = head_dim // 4 // 2 * 2
    hw = (head_dim - t) // 2
    if hw % 2:
        t -= 2
        hw = (head_dim - t) // 2
    return t, hw, hw


def rotary_tables(head_dim: int, first_frame: int, frames: int, height: int, width: int,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``[t, h, w, 1, head_dim / 2]`` (float32) of the angles each channel pair turns by."""
    angles = []
    for size, count, first, axis in zip(rope_split(head_dim), (frames, height, width), (first_frame, 0, 0), range(3)):
        inv_freq = (1.0 / 10000 ** (torch.arange(0, size, 2, dtype=torch.float64) / size)).float().to(device)
        position = torch.arange(first, first + count, device=device, dtype=torch.float32)
        angle = position[:, None] * inv_freq[None]  # [count, size / 2]
        shape = [1, 1, 1, size // 2]
        shape[axis] = count
        angles.append(angle.view(shape).expand(frames, height, width, size // 2))
    angle = torch.cat(angles, dim=-1).unsqueeze(-2)
    return angle.cos(), angle.sin()


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``x`` ``[B, t, h, w, heads, d]`` with each pair ``(x[2i], x[2i+1])`` turned by its angle (in float32)."""
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    return torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1).flatten(-2).to(x.dtype)
