"""Steps done out of a run's total, reported after each step (the report may raise to stop the run)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .settings import Progress


@dataclass
class Counter:
    total: int  # 0: not known yet (a stream of unknown length): the total grows with the steps
    report: Progress
    done: int = 0

    def start(self) -> None:
        self.report(0, self.total, None)

    def step(self, preview: torch.Tensor | None = None) -> None:
        self.done += 1
        self.total = max(self.total, self.done)  # a delayed decoder's flush may take more steps than planned
        self.report(self.done, self.total, preview)

    def finish(self) -> None:
        """Reports the run complete (a delayed decoder's flush may have taken fewer steps than planned)."""
        if self.done < self.total:
            self.done = self.total
            self.report(self.done, self.total, None)
