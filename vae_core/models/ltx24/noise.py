"""The noise the decoder starts from, drawn frame by frame exactly as the host draws it for the whole clip.

The host draws ``torch.randn((B, 3, F, H, W), generator=Generator().manual_seed(0))``
on every decode: one tensor for the whole clip (1.5 GB for 121 frames at 1080p
in bfloat16). On the CPU, torch draws one 32-bit number per element in order
and turns each aligned group of 16 into normals (the last group of a tensor
whose size is not a multiple of 16 is drawn again). A frame of one channel is
``H * W`` elements, a multiple of 16 here, so each frame can be drawn on its
own: a generator per channel, moved ahead to the frame's place in the whole
draw (drawing and dropping uniform numbers, a cheap pass), gives the very
values of the whole draw. The generators are kept where they stopped, so a
stream that asks for its frames in order never moves one far.

The host draws on the decode's device: on a GPU its noise (and so its frames)
differ from the CPU's, and FrameStream's stays the CPU's, the same on every device.
"""

from __future__ import annotations

import torch

CHANNELS = 3
_SKIP_CHUNK = 1 << 22  # uniform numbers drawn and dropped at once when moving a generator ahead


class ClipNoise:
    """Frames of the noise ``randn((1, 3, frames, height, width))`` from a generator seeded with ``seed``."""

    def __init__(self, seed: int, frames: int, height: int, width: int) -> None:
        if height * width % 16:
            raise ValueError(f"a noise frame of {height}x{width} values is not a whole number of 16-value groups")
        self.seed, self.frames, self.plane = seed, frames, height * width
        self.size = (height, width)
        self._generators: list[tuple[torch.Generator, int]] = []  # per channel: the generator and its place
        self._last: tuple[int, int, torch.Tensor] | None = None  # the last frames drawn: a step's tiles share them

    def draw(self, start: int, stop: int) -> torch.Tensor:
        """Frames ``[start, stop)``, ``[1, 3, stop - start, height, width]`` (float32, CPU)."""
        if self._last is not None and self._last[:2] == (start, stop):
            return self._last[2]
        out = torch.empty(CHANNELS, stop - start, *self.size)
        for channel in range(CHANNELS):
            generator = self._at(channel, (channel * self.frames + start) * self.plane)
            out[channel] = torch.randn(stop - start, *self.size, generator=generator)
            self._generators[channel] = (generator, (channel * self.frames + stop) * self.plane)
        self._last = (start, stop, out.unsqueeze(0))
        return self._last[2]

    def _at(self, channel: int, place: int) -> torch.Generator:
        """Channel ``channel``'s generator moved to the ``place``-th number of the whole draw."""
        if len(self._generators) <= channel:
            self._generators.append((torch.Generator().manual_seed(self.seed), 0))
        generator, at = self._generators[channel]
        if at > place:  # asked again for earlier frames (a step run again): from the seed
            generator, at = torch.Generator().manual_seed(self.seed), 0
        scratch = torch.empty(min(_SKIP_CHUNK, place - at))
        while at < place:
            step = min(_SKIP_CHUNK, place - at)
            scratch[:step].uniform_(generator=generator)
            at += step
        return generator
