"""MiniMax H3's video VAE: 24 latent channels, 16x16 in space, 17k + 5 frames <-> 5k + 2 latent frames.

Why it streams the way it does:

* The encoder takes 17 frames at a time, each clip a fresh start (see
  :mod:`encoder`); a clip gives 5 latent frames, and the last 3 latent frames of
  the whole clip are dropped, so a clip cut is the encoder's step
  (:meth:`MiniMaxH3VAE.encode_steps`) and the last clip (5 frames, padded with
  its last frame as the reference pads it) gives 2.
* The decoder attends over a window of 7 latent frames at once, windows
  starting every 5 latent frames, and the release defines its frames as those
  windows cross-faded: a window's first 3 frames are dropped (the encoder's
  clip is 17 frames, not 20), its next 17 kept, the 5 frames of its last two
  latent frames faded into the next window's first 5. So each window waits for
  its 7 latent frames, gives 17 frames, and holds 5 back for the next one; the
  clip's end lets the held 5 out. The stream runs it as a decoder with a delay
  of 2 latent frames: the latent frames not yet in a window and the held frames
  are its carries.
* Within a window, the release decodes tiles of 256 px and blends them
  (:mod:`tiles`): attention and rotary positions span one tile, so the tiles
  are part of the model and the engine never tiles it further
  (``MemoryProfile.native_tile_px``).

Pixels are ImageNet-normalised RGB inside the model (the reference's
convention); the engine's [-1, 1] are converted on the way in and out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import FrameStreamError
from ...streaming.model import CausalVideoVAE
from ...streaming.state import active_state
from ...streaming.traits import MemoryProfile, Streaming
from . import tiles
from .decoder import Decoder
from .encoder import Encoder

CLIP = 17  # frames the encoder takes at once (clip_length)
STRIDE = 5  # latent frames a clip gives, and how far apart decoder windows start (ceil(CLIP / 4))
WINDOW = 7  # latent frames a decoder window reads: STRIDE plus the 2 the dropped 3 (token_drop) leave to overlap
PRE_PADDING = 3  # a window's first frames that stand for nothing (20 frames per 5 latent frames, 17 in a clip)
FADE = 5  # frames of a window's last two latent frames cross-faded into the next window's first
TILE_PX, TILE_OVERLAP_PX = 256, 64  # the release's spatial tiles
# the release's per-channel statistics of its latent space: the host's LATENTs are (latent - mean) / std
LATENTS_MEAN = (0.858090341091156, -0.9606591463088989, 1.0661640167236328, -0.5090325474739075,
                -0.2727581858634949, -1.3675414323806763, -0.2553254961967468, -0.26907554268836975,
                -0.5376840829849243, -0.0464097298681736, 0.6657370328903198, 0.19690127670764923,
                -0.5460608005523682, -0.4035342037677765, -0.23683024942874908, 0.25928452610969543,
                -0.30133944749832153, 0.211341992020607, -1.1206848621368408, 0.3581933379173279,
                -0.04225143790245056, 0.2604829967021942, 0.22864092886447906, 0.7056031823158264)
LATENTS_STD = (1.2223774194717407, 1.2767263650894165, 1.68317747116088865, 1.7549455165863037,
               1.5636216402053833, 2.194143533706665, 0.96531379222869875, 1.05698859691619875,
               0.841948926448822, 0.7729952931404114, 1.8955937623977661, 0.946841835975647,
               0.7996809482574463, 0.44988900423049925, 0.7197399735450745, 0.69362932443618775,
               2.961095094680786, 2.7694199085235595, 3.0496184825897215, 2.1088054180145265,
               3.276226282119751, 3.1627357006073, 2.28168129920959475, 2.6127843856811525)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def per_channel(values: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """``values`` as a ``[C, 1, 1, 1]`` tensor on ``like``'s device and dtype, for ``[B, C, T, H, W]``."""
    return torch.tensor(values, device=like.device, dtype=like.dtype).view(-1, 1, 1, 1)


@dataclass(frozen=True)
class MiniMaxConfig:
    widths: tuple[int, ...] = (128, 256, 256, 512, 512, 1024)  # the encoder's levels, finest first
    layers: int = 2  # resnets per encoder level
    latent_channels: int = 24
    decoder_layers: int = 36
    heads: int = 32
    head_dim: int = 64
    registers: int = 4
    space_strides: tuple[int, ...] = (2, 2, 2, 2, 1, 1)
    time_strides: tuple[int, ...] = (1, 2, 2, 1, 1, 1)


class MiniMaxH3VAE(CausalVideoVAE):
    family = "MiniMax H3 video VAE"
    temporal_ratio = 4
    spatial_ratio = 16
    # a window's last 2 latent frames wait for the next window; the step with the clip's end lets them out, so
    # at most one step feeding nothing (a stream flushed without its end pushed as last) flushes them
    streaming = Streaming("delayed", delay=1.0)

    def __init__(self, cfg: MiniMaxConfig = MiniMaxConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_channels = cfg.latent_channels
        self.encoder = Encoder(cfg.widths, cfg.layers, cfg.space_strides, cfg.time_strides, cfg.latent_channels)
        self.quant_conv = nn.Conv3d(2 * cfg.latent_channels, 2 * cfg.latent_channels, 1)
        self.post_quant_conv = nn.Conv3d(cfg.latent_channels, cfg.latent_channels, 1)
        self.decoder = Decoder(cfg.latent_channels, cfg.decoder_layers, cfg.heads, cfg.head_dim, self.spatial_ratio,
                               self.temporal_ratio, cfg.registers)
        self.normalized_latents = False
        self.latents_mean, self.latents_std = LATENTS_MEAN, LATENTS_STD
        self.set_tiles(TILE_PX, TILE_OVERLAP_PX)
        # a window's tokens (dim wide, one per 4 x 16 x 16 pixels) peak at about 24 token-widths each (the
        # feed-forward's gate and value, 16; the attention's query, key, value and output): as the engine counts
        # 6 tensors of the finest width (benchmarks/minimax_decode.py measures it)
        dim = cfg.heads * cfg.head_dim
        self.decoder_width = max(1, round(24 / 6 * dim / (self.spatial_ratio ** 2 * self.temporal_ratio)))

    def set_tiles(self, tile_px: int, overlap_px: int) -> "MiniMaxH3VAE":
        """Decode and encode in tiles of ``tile_px`` overlapping by at least ``overlap_px`` (the release's 256
        and 64 by default, as diffusers' ``enable_tiling`` sets them); other tiles give other frames."""
        self.tile_px, self.tile_overlap_px = tile_px, overlap_px
        self.memory_profile = MemoryProfile(native_tile_px=tile_px)
        return self

    @property
    def finest_width(self) -> int:
        return self.decoder_width

    @property
    def encoder_finest_width(self) -> int:
        return self.cfg.widths[0]

    # --- lengths: 5k + 2 latent frames stand for 17k + 5 frames, each 5th latent frame (from the first) for one

    def decoded_frames(self, latent_frames: int) -> int:
        clips, rest = divmod(latent_frames, STRIDE)
        return CLIP * clips + (1 + self.temporal_ratio * (rest - 1) if rest else 0)

    def pixel_frames(self, latent_frames: int) -> int:
        return self.decoded_frames(latent_frames)

    def latent_frames(self, pixel_frames: int) -> int:
        """1 for fewer than 5 frames (an image), else ``5k + 2`` for ``17k + 5`` frames and up to 16 more."""
        first_clip = self.decoded_frames(WINDOW - STRIDE)
        return 1 if pixel_frames < first_clip else (pixel_frames - first_clip) // CLIP * STRIDE + WINDOW - STRIDE

    @property
    def min_frame_px(self) -> int:
        return 2 * self.spatial_ratio  # the deepest convs reflect their edges, which needs two latent pixels

    @property
    def frame_counts(self) -> str:
        return "17k + 5 (or 1)"

    def check_length(self, latent_frames: int) -> None:
        if latent_frames != 1 and latent_frames % STRIDE != WINDOW - STRIDE:
            raise FrameStreamError(
                f"the latent has {latent_frames} frames; a {self.family} latent has 5k + 2 (2, 7, 12, 17, ...) or 1 "
                "(an image), as its encoder makes them: this one was cut or made for another model")

    def decode_steps(self, length: int, per_step: int) -> list[tuple[int, int]]:
        """One decoder window a step, whatever ``per_step`` asks: the first reads 7 latent frames, each later one
        5 more (with the 2 before them, carried)."""
        stops = list(range(WINDOW, length, STRIDE)) + [length]
        return list(zip([0] + stops[:-1], stops))

    def encode_steps(self, pixel_frames: int, latents_per_step: int) -> list[tuple[int, int]]:
        """One clip of 17 frames a step, whatever ``latents_per_step`` asks (a lone frame alone)."""
        return [(start, min(start + CLIP, pixel_frames)) for start in range(0, pixel_frames, CLIP)]

    # --- conventions

    def use_host_conventions(self, host_module: nn.Module | None = None) -> "MiniMaxH3VAE":
        """The host's LATENTs are normalised by the release's per-channel statistics (its module's buffers, where
        the file held others)."""
        self.normalized_latents = True
        for name in ("latents_mean", "latents_std"):
            held = getattr(host_module, name, None)
            if isinstance(held, torch.Tensor) and held.numel() == self.latent_channels:
                setattr(self, name, tuple(held.float().tolist()))
        return self

    def configure(self, normalized_latents: bool | None = None, decode_timestep: float | None = None,
                  noise_seed: int | None = None) -> "MiniMaxH3VAE":
        if normalized_latents is not None:
            self.normalized_latents = normalized_latents
        return self

    def _statistics(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return per_channel(self.latents_mean, like), per_channel(self.latents_std, like)

    # --- decode

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        """The latent, un-normalised and through its 1x1 conv (as the host computes it: the int8 decoder's
        rounding of each token follows these values to the last bit). A flush step's has no frames."""
        if z.shape[2] == 0:
            return z
        if self.normalized_latents:
            mean, std = self._statistics(z)
            z = z * std + mean
        return self.post_quant_conv(z)

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        """This step's latent frames -> the frames of every window they complete; the frames of a window's last
        two latent frames wait for the next window (or the clip's end)."""
        state = active_state()
        waiting = state.read_frames(self.decoder, features) if state is not None else None
        held = state.read_frames(self.decoder, features, "held") if state is not None else None
        held = held if held is not None and held.shape[2] else None
        z = features if waiting is None else torch.cat([waiting, features], dim=2)
        out = []
        while z.shape[2] >= WINDOW:
            frames = self._decode_window(z[:, :, :WINDOW])
            out.append(self._faded(frames[:, :, PRE_PADDING : PRE_PADDING + CLIP], held))
            held = frames[:, :, -FADE:].clone()  # not a view: the window's other frames can go
            z = z[:, :, STRIDE:]
        if state is None or state.ending:
            out.append(self._end(z, held))
            z, held = z[:, :, :0], None
        if state is not None:
            state.write_frames(self.decoder, z)
            state.write_frames(self.decoder, held if held is not None else z[:, :0, :0], "held")
        if not out:
            h, w = features.shape[-2:]
            return features.new_zeros(features.shape[0], 3, 0, h * self.spatial_ratio, w * self.spatial_ratio)
        return out[0] if len(out) == 1 else torch.cat(out, dim=2)

    def _end(self, z: torch.Tensor, held: torch.Tensor | None) -> torch.Tensor:
        """The clip's last frames: the held ones, or a last window the clip does not fill (2 latent frames alone,
        or lengths the reference pads), padded with its last latent frame as the reference pads it."""
        count = z.shape[2]
        if count == 0:  # let out already
            return z.new_zeros(z.shape[0], 3, 0, z.shape[3] * self.spatial_ratio, z.shape[4] * self.spatial_ratio)
        if held is not None and count == WINDOW - STRIDE:
            return held
        if held is None and count == 1:  # an image: one latent frame decoded alone, its last frame kept
            return self._decode_window(z)[:, :, -1:]
        padded = torch.cat([z, z[:, :, -1:].expand(-1, -1, WINDOW - count, -1, -1)], dim=2)
        frames = self._decode_window(padded)
        frames = torch.cat([self._faded(frames[:, :, PRE_PADDING : PRE_PADDING + CLIP], held), frames[:, :, -FADE:]],
                           dim=2)
        return frames[:, :, : self.decoded_frames(count)]

    def _faded(self, frames: torch.Tensor, held: torch.Tensor | None) -> torch.Tensor:
        return frames if held is None else tiles.fade(held, frames, FADE, dim=2)

    def _decode_window(self, z: torch.Tensor) -> torch.Tensor:
        """A window ``[B, C, t, h, w]`` in the release's tiles -> ``[B, 3, 4t, 16h, 16w]`` in [-1, 1]."""
        r = self.spatial_ratio

        mean, std = per_channel(IMAGENET_MEAN, z).flatten(), per_channel(IMAGENET_STD, z).flatten()
        to_engine = (2.0 * std, 2.0 * mean - 1.0)  # ImageNet-normalised -> [-1, 1], per channel, in the last layer

        def tile(top: int, left: int, rows: int, cols: int) -> torch.Tensor:
            return self.decoder(z[..., top // r : (top + rows) // r, left // r : (left + cols) // r], to_engine)

        return tiles.run_tiled(tile, z.shape[-2] * r, z.shape[-1] * r, self.tile_px, self.tile_overlap_px, r, 1.0)

    # --- encode

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        """One clip ``[B, 3, t, H, W]`` in [-1, 1] -> its latent mean; a clip shorter than 17 frames (the last) is
        padded with its last frame and keeps the latent frames its own frames stand for."""
        mean, std = per_channel(IMAGENET_MEAN, x), per_channel(IMAGENET_STD, x)
        pixels = ((x + 1.0) * 0.5 - mean) / std
        frames = pixels.shape[2]
        if 1 < frames < CLIP:
            pixels = torch.cat([pixels, pixels[:, :, -1:].expand(-1, -1, CLIP - frames, -1, -1)], dim=2)
        c = self.latent_channels

        def tile(top: int, left: int, rows: int, cols: int) -> torch.Tensor:
            moments = self.encoder(pixels[..., top : top + rows, left : left + cols])
            return F.conv3d(moments, self.quant_conv.weight[:c], self.quant_conv.bias[:c])  # the mean's half

        r = self.spatial_ratio
        latent = tiles.run_tiled(tile, x.shape[-2], x.shape[-1], self.tile_px, self.tile_overlap_px, r, 1 / r)
        return latent[:, :, : self.latent_frames(frames)] if frames < CLIP else latent

    def encode_shared(self, features: torch.Tensor) -> torch.Tensor:
        if self.normalized_latents:
            mean, std = self._statistics(features)
            return (features - mean) / std
        return features
