"""One copy of the carries while a step runs, and still an exact re-run of a step that failed.

A step overwrites each layer's carry as soon as it has the new one, instead of
writing a second copy for the end of the step to adopt. Until the step ends,
the old values are still needed in two places:

* by the tiles after the one at work, whose boxes reach into the part it owns
  (their overlap): those old values are set aside (:meth:`Journal.keep_for`)
  and patched into what the later tiles read (:meth:`Journal.patch`);
* by a re-run after running out of memory: what a step overwrites is first
  copied to ``backup`` (host RAM, for carries on a GPU) and put back by
  :meth:`Journal.undo`. Without a backup nothing is copied and a step that
  overwrote a carry cannot be re-run; that suits the CPU, where a failed
  allocation ends the run anyway.

Rectangles are ``(top, left, height, width)`` on the step's grid, as
:class:`state.Window` gives them.
"""

from __future__ import annotations

import torch

Rect = tuple[int, int, int, int]
_ABSENT = object()


def intersection(a: Rect, b: Rect) -> Rect | None:
    top, left = max(a[0], b[0]), max(a[1], b[1])
    bottom, right = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    return (top, left, bottom - top, right - left) if bottom > top and right > left else None


def _slices(rect: Rect, scale: int, origin: tuple[int, int] = (0, 0)) -> tuple[slice, slice]:
    top, left = rect[0] - origin[0], rect[1] - origin[1]
    return slice(top * scale, (top + rect[2]) * scale), slice(left * scale, (left + rect[3]) * scale)


class Journal:
    """What one step overwrote (to undo it) and what later tiles of the step must still read of the old carries."""

    def __init__(self, backup: torch.device | None) -> None:
        self.backup = backup
        self._undo: list[tuple[dict, str, Rect | None, int, object]] = []
        self._stale: dict[tuple[int, str], list[list]] = {}  # [rect, scale, old values, readers to come]
        self.lost = False  # a carry was overwritten without a backup: the step cannot be undone

    def replacing(self, values: dict, key: str) -> None:
        """Before ``values[key]`` is replaced as a whole."""
        old = values.get(key, _ABSENT)
        self._undo.append((values, key, None, 1, old if old is _ABSENT else self._saved(old)))

    def overwriting(self, values: dict, key: str, rect: Rect, scale: int) -> None:
        """Before ``rect`` of the carry ``values[key]`` (``scale`` px per grid cell) is written in place."""
        self._undo.append((values, key, rect, scale, self._saved(values[key][(..., *_slices(rect, scale))])))

    def _saved(self, old: torch.Tensor):
        if self.backup is None:
            self.lost = True
            return None
        return old.to(self.backup, copy=True)

    def keep_for(self, later_boxes, layer: int, key: str, carry: torch.Tensor, owned: Rect, scale: int) -> None:
        """Sets aside the old values in ``owned`` that the boxes of the step's later tiles will read; each part
        is let go once the last of those tiles has read it."""
        kept = self._stale.setdefault((layer, key), [])
        for rect, readers in _read_later(owned, list(later_boxes)):
            kept.append([rect, scale, carry[(..., *_slices(rect, scale))].clone(), readers])

    def patch(self, layer: int, key: str, frames: torch.Tensor, box: Rect) -> torch.Tensor:
        """``frames`` (the carry read over ``box``) with the old values put back where earlier tiles wrote new ones."""
        kept = self._stale.get((layer, key), [])
        patched = False
        for entry in kept:
            rect, scale, old, _ = entry
            inside = intersection(rect, box)
            if inside is None:
                continue
            if not patched:
                frames, patched = frames.clone(), True
            source = old[(..., *_slices(inside, scale, rect[:2]))]
            frames[(..., *_slices(inside, scale, box[:2]))] = source.to(frames.device, frames.dtype)
            entry[3] -= 1
        kept[:] = [entry for entry in kept if entry[3] > 0]
        return frames

    def kept_bytes(self) -> int:
        return sum(entry[2].nbytes for kept in self._stale.values() for entry in kept)

    def undo(self) -> bool:
        """Puts back everything the step overwrote; False when something was overwritten without a backup."""
        if self.lost:
            return False
        for values, key, rect, scale, old in reversed(self._undo):
            if old is _ABSENT:
                values.pop(key, None)
            elif rect is None:
                values[key] = old.to(values[key].device)
            else:
                values[key][(..., *_slices(rect, scale))] = old.to(values[key].device)
        self.clear()
        return True

    def clear(self) -> None:
        self._undo, self._stale, self.lost = [], {}, False


def _read_later(owned: Rect, later_boxes: list[Rect]) -> list[tuple[Rect, int]]:
    """The parts of ``owned`` that ``later_boxes`` read, as disjoint rectangles, each read by the same boxes all
    over, with how many they are (a part is let go once each of them has read it)."""
    parts = [rect for rect in (intersection(owned, box) for box in later_boxes) if rect is not None]
    if not parts:
        return []
    rows = sorted({edge for top, _, height, _ in parts for edge in (top, top + height)})
    cols = sorted({edge for _, left, _, width in parts for edge in (left, left + width)})
    pieces = []
    for top, bottom in zip(rows, rows[1:]):
        run = None  # merges neighbouring cells of this band that the same boxes read
        for left, right in zip(cols, cols[1:]):
            cell = (top, left, bottom - top, right - left)
            readers = frozenset(i for i, box in enumerate(later_boxes) if intersection(cell, box) is not None)
            if run is not None and readers == run[1] and run[0][1] + run[0][3] == left:
                run = ((top, run[0][1], bottom - top, right - run[0][1]), readers)
                pieces[-1] = run
            elif readers:
                run = (cell, readers)
                pieces.append(run)
            else:
                run = None
    return [(rect, len(readers)) for rect, readers in pieces]


def peak_kept_cells(windows) -> int:
    """The most grid cells of old values a step keeps aside at once for its later tiles (:meth:`Journal.keep_for`),
    per carry of one cell per grid cell: the memory plan counts them beside the carries."""
    kept, peak = [], 0
    for i, window in enumerate(windows):
        for entry in kept:
            if intersection(entry[0], window.box) is not None:
                entry[1] -= 1
        kept = [entry for entry in kept if entry[1] > 0]
        kept += [[rect, readers] for rect, readers in _read_later(window.owned, [w.box for w in windows[i + 1 :]])]
        peak = max(peak, sum(rect[2] * rect[3] for rect, _ in kept))
    return peak
