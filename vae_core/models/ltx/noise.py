"""LTX-Video 0.9.1's decoder noise, drawn so that every window and tile of a stream sees the same fields.

That release's decoder resnets add, after each conv, one random [H, W] field
scaled per channel and shared by every frame of the call. Drawn afresh per
call, as diffusers and the host do, every window and tile of a streamed decode
would get noise of its own, and the seams would show. Here the fields are drawn
once per frame size, for the whole frame, in the decoder's layer order from a
generator seeded with ``seed``: the very sequence diffusers draws from the
global generator after ``torch.manual_seed(seed)``. Each tile takes its part.
"""

from __future__ import annotations

import torch

from ...streaming.state import active_state


class SpatialNoise:
    def __init__(self, upscales: list[int], seed: int = 0) -> None:
        self.upscales = upscales  # each field's resolution over the latent's, in the order they are drawn
        self.seed = seed
        self._key: tuple | None = None
        self._fields: list[torch.Tensor] = []

    def fields(self, latent_size: tuple[int, int], device: torch.device, dtype: torch.dtype) -> list[torch.Tensor]:
        key = (tuple(latent_size), self.seed, device, dtype)
        if key != self._key:
            generator = torch.Generator().manual_seed(self.seed)
            height, width = latent_size
            self._fields = [torch.randn(height * s, width * s, generator=generator).to(device, dtype)
                            for s in self.upscales]
            self._key = key
        return self._fields

    def __call__(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """Field ``index`` over the part of the frame that ``x`` (an activation at its resolution) covers."""
        upscale = self.upscales[index]
        state = active_state()
        window = state.window if state is not None else None
        if window is None:  # x is the whole frame
            return self.fields((x.shape[-2] // upscale, x.shape[-1] // upscale), x.device, x.dtype)[index]
        rows, cols = window.region(window.scale_of(x), window.box)
        return self.fields(window.frame, x.device, x.dtype)[index][rows, cols]
