"""A tqdm-style progress line with ETA, for the CLI and for the host's console."""

from __future__ import annotations

import sys
import time


class ConsoleProgress:
    """A tqdm-style bar on stderr: ``decode  45%|#####     | 9/20 steps [00:12<00:14, 1.3 s/step]``.

    Redrawn in place on a terminal; in a log, one line every few seconds.
    """

    def __init__(self, label: str, quiet: bool = False) -> None:
        self.label, self.quiet = label, quiet
        self.started = None  # the first report, so that loading the model is not counted as work
        self.tty = sys.stderr.isatty()
        self.last_line = 0.0

    def __call__(self, done: int, total: int, preview=None) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        self.started = now if self.started is None else self.started
        if not self.tty and done not in (0, total) and now - self.last_line < 5.0:
            return
        self.last_line = now
        elapsed = now - self.started
        filled = int(10 * done / max(total, 1))
        eta = _clock(elapsed / done * (total - done)) if done else "?"
        rate = f", {elapsed / done:.2f} s/step" if done else ""
        end = "\r" if self.tty and done < total else "\n"
        sys.stderr.write(f"{self.label} {100 * done // max(total, 1):3d}%|{'#' * filled}{' ' * (10 - filled)}| "
                         f"{done}/{total} steps [{_clock(elapsed)}<{eta}{rate}]{end}")
        sys.stderr.flush()

    def retry(self, message: str) -> None:
        sys.stderr.write(f"\n{self.label}: {message}\n")


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes:02d}:{seconds:02d}" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"
