"""The tiny video autoencoders (madebyollin/taehv: TAEHV, TAEW2.1/2.2, TAEHV1.5, TAECVX, TAELTX-2), streamed.

Convs, ReLUs and MemBlocks, no norms and no attention: a decode is cheap
enough for a preview of the whole clip at every sampling step, or a draft of
a video in seconds. The layers are numbered as the reference's ``nn.Sequential``
(``decoder.3.conv.0.weight``), so its checkpoints load as they are.

Time: the encoder pools frames in groups (TPool) and the decoder grows them
(TGrow); the decoder's first ``temporal_ratio - 1`` frames stand before the
clip and are dropped, so ``n`` latent frames give ``1 + r (n - 1)`` frames, as
the big VAEs do. The encoder pads a clip's end with copies of its last frame to
fill the last group, as the reference does.

Values: pixels in [0, 1], and latents as the diffusion model samples them
(the big VAE's latent after its normalisation). Decode and encode take and
give the big VAE's raw latents, as every family does, mapped through the
file's :mod:`.latent_spaces`; ``configure(normalized_latents=True)`` takes the
sampler's own (a preview of its prediction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn

from ...errors import FrameStreamError
from ...streaming.model import CausalVideoVAE
from ...streaming.traits import Streaming
from ...streaming.state import active_state, drop_first
from . import latent_spaces
from .layers import Clamp, MemBlock, PixelShuffle, SuperMemBlock, TGrow, TPool, Upsample, frame_conv, \
    pixel_shuffle, pixel_unshuffle

ENCODER_WIDTH = 64


@dataclass(frozen=True)
class TinyVideoConfig:
    latent_channels: int = 16
    patch_size: int = 1
    encoder_strides: tuple[int, ...] = (2, 2, 1)  # frames pooled at each of the encoder's three levels; () none
    decoder_strides: tuple[int, ...] = (1, 2, 2)  # frames grown at each of the decoder's three levels; () none
    decoder_widths: tuple[int, ...] = (256, 128, 64, 64)
    super: bool = False  # the larger ``_super`` decoder (ConvNeXt-style blocks, pixel-shuffle upsampling)

    @property
    def temporal_ratio(self) -> int:
        strides = self.decoder_strides or self.encoder_strides
        return math.prod(strides)


def tiny_encoder(cfg: TinyVideoConfig) -> nn.Sequential:
    """Pixels (patched) -> latent: three levels of (pool frames, stride-2 conv, three MemBlocks)."""
    w = ENCODER_WIDTH
    layers: list[nn.Module] = [frame_conv(3 * cfg.patch_size**2, w), nn.ReLU(inplace=True)]
    for stride in cfg.encoder_strides:
        layers += [TPool(w, stride), frame_conv(w, w, stride=2, bias=False), MemBlock(w, w), MemBlock(w, w),
                   MemBlock(w, w)]
    return nn.Sequential(*layers, frame_conv(w, cfg.latent_channels))


def tiny_decoder(cfg: TinyVideoConfig) -> nn.Sequential:
    """Latent -> pixels (patched): three levels of (three MemBlocks, 2x upsampling, grow frames)."""
    n = cfg.decoder_widths
    out = 3 * cfg.patch_size**2
    if cfg.super:
        layers: list[nn.Module] = [frame_conv(cfg.latent_channels, n[0], kernel=1, bias=False)]
        for level, stride in enumerate(cfg.decoder_strides):
            layers += [SuperMemBlock(n[level]), SuperMemBlock(n[level]), SuperMemBlock(n[level]),
                       frame_conv(n[level], n[level + 1] * 4), nn.ReLU(inplace=True), PixelShuffle(2),
                       TGrow(n[level + 1], stride)]
        return nn.Sequential(*layers, frame_conv(n[3], out))
    layers = [Clamp(), frame_conv(cfg.latent_channels, n[0]), nn.ReLU(inplace=True)]
    for level, stride in enumerate(cfg.decoder_strides):
        layers += [MemBlock(n[level], n[level]), MemBlock(n[level], n[level]), MemBlock(n[level], n[level]),
                   Upsample(), TGrow(n[level], stride), frame_conv(n[level], n[level + 1], bias=False)]
    return nn.Sequential(*layers, nn.ReLU(inplace=True), frame_conv(n[3], out))


def _first_of(layers: nn.Sequential, kinds: tuple[type, ...], last: bool = False) -> int:
    found = [i for i, layer in enumerate(layers) if isinstance(layer, kinds)]
    return found[-1] if last else found[0]


class TinyVideoAutoencoder(CausalVideoVAE):
    family = "tiny video autoencoder (TAEHV)"
    streaming = Streaming(needs_length=True)  # where the clip ends decides the frames it drops and pads: see _frames_before

    def __init__(self, cfg: TinyVideoConfig = TinyVideoConfig(), trims_even_clips: bool = True,
                 space: latent_spaces.LatentSpace = latent_spaces.SAMPLER) -> None:
        super().__init__()
        self.cfg = cfg
        self.trained_space = space  # what the file's latents are (the raw latents' way in)
        self.normalized_latents = False
        self.latent_channels = cfg.latent_channels
        self.spatial_ratio = 8 * cfg.patch_size
        self.temporal_ratio = cfg.temporal_ratio
        # TAECVX keeps all 4n frames of an even-length CogVideoX latent, as CogVideoX does
        self.trims_even_clips = trims_even_clips
        self.encoder = tiny_encoder(cfg) if cfg.encoder_strides else None
        self.decoder = tiny_decoder(cfg) if cfg.decoder_strides else None
        if self.decoder is not None:  # tiles start at the first upsampling; the finer stages are the costly ones
            self._decoder_split = _first_of(self.decoder, (Upsample, PixelShuffle))
            if cfg.super:  # the conv before the first shuffle runs in the tiles too: its input is a quarter of its output
                self._decoder_split -= 2
        if self.encoder is not None:  # the last stride-2 conv ends the tiled part
            self._encoder_split = _first_of(self.encoder, (MemBlock,), last=True) - 2

    @property
    def finest_width(self) -> int:
        return max(1, self.cfg.decoder_widths[-1] // self.cfg.patch_size**2)

    @property
    def encoder_finest_width(self) -> int:
        return max(1, ENCODER_WIDTH // self.cfg.patch_size**2)

    @property
    def space(self) -> latent_spaces.LatentSpace:
        return latent_spaces.SAMPLER if self.normalized_latents else self.trained_space

    def configure(self, normalized_latents: bool | None = None, decode_timestep: float | None = None,
                  noise_seed: int | None = None) -> "TinyVideoAutoencoder":
        if normalized_latents is not None:
            self.normalized_latents = normalized_latents
        return self

    def decoded_frames(self, latent_frames: int) -> int:
        if not self.trims_even_clips and latent_frames % 2 == 0:
            return self.temporal_ratio * latent_frames
        return self.pixel_frames(latent_frames)

    def _half(self, part: str) -> nn.Sequential:
        half = getattr(self, part)
        if half is None:
            other, verb = ("decoder", "encode") if part == "encoder" else ("encoder", "decode")
            raise FrameStreamError(f"this TAE file holds only the {other}; load one with both halves to {verb}")
        return half

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        return self._half("decoder")[: self._decoder_split](self.space.to_sampler(z))

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        x = self._half("decoder")[self._decoder_split :](features)
        if self.cfg.patch_size > 1:
            x = pixel_shuffle(x, self.cfg.patch_size)
        return drop_first(self, x, self._frames_before(x)).clamp(0, 1).mul(2).sub(1)

    def _frames_before(self, x: torch.Tensor) -> int:
        """Frames the decoder makes ahead of the clip's first (its first latent frame's extra frames)."""
        state = active_state()
        length = state.expected_frames if state is not None else None
        if not self.trims_even_clips and length is not None and length % 2 == 0:
            return 0
        return self.temporal_ratio - 1

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        x = self._padded_end(x.add(1).div(2))
        if self.cfg.patch_size > 1:
            x = pixel_unshuffle(x, self.cfg.patch_size)
        return self._half("encoder")[: self._encoder_split](x)

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        return self.space.from_sampler(self._half("encoder")[self._encoder_split :](features))

    def _padded_end(self, x: torch.Tensor) -> torch.Tensor:
        """``x``, and at the clip's end copies of its last frame filling the encoder's last group of frames."""
        state = active_state()
        fed = x.shape[2]
        if state is not None:
            fed += state.carries.earlier(self).fed or 0
            state.carries.writing(self).fed = fed
            if state.expected_frames is None or fed < self.pixel_frames(state.expected_frames):
                return x
        missing = -fed % self.temporal_ratio
        return torch.cat([x, x[:, :, -1:].expand(-1, -1, missing, -1, -1)], dim=2) if missing else x
