"""LTX-2's diffusion decoder (the host's "LTX 2.4" VAE, diffusers' LTX-2.5): LTX-2 latents (128 channels, 32x
in space, 8x in time) to frames, by attention blocks that upsample the latent into a context, then one
denoising pass from noise conditioned on that context.

Why it streams the way it does: every layer is per token except the
neighbourhood attention, which reads ``r`` frames each side at its stage's frame
rate (1 in stages 1-4, 5 in the diffusion stage), non-causally. So each block
is streamed on its own (:mod:`wavefront`): the clip passes through the blocks
as a wavefront, a frame leaves about 18 latent frames after it came in, and the
clip's end (two copies of its last latent frame appended, their frames cropped
again) lets the rest out. Frames are the whole-clip decode's, exactly; memory
holds a few frames per block, whatever the length. The noise is drawn frame by
frame as the host draws it for the whole clip (:mod:`noise`).

The attention reaches about 1000 px across, so spatial tiles cannot be exact;
the engine's tiles blend them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import FrameStreamError
from ...streaming.model import CausalVideoVAE
from ...streaming.state import active_state, drop_first
from ...streaming.traits import MemoryProfile, Streaming
from .blocks import NABlock, RMSNorm, TimestepEmbedder, Upsample, patchify, unpatchify
from .config import DiffusionDecoderConfig
from .noise import ClipNoise
from .wavefront import fed_so_far, stream_block

HOST_NOISE_SEED = 0  # the host draws the noise from a generator seeded with 0 on every decode


class SharedModulation(nn.Module):
    """The diffusion stage's AdaLN scales and shifts, one set for every token (they depend on the timestep only)."""

    def __init__(self, t_emb_dim: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(t_emb_dim, 7 * channels)

    def forward(self, t_emb: torch.Tensor) -> torch.Tensor:
        return self.proj(F.silu(t_emb)).view(7, -1)


class Decoder(nn.Module):
    def __init__(self, cfg: DiffusionDecoderConfig) -> None:
        super().__init__()
        widths, hd = cfg.stage_channels, cfg.head_dim
        self.conv_in = nn.Linear(cfg.latent_channels, widths[0])
        self.det_stages = nn.ModuleList(
            nn.ModuleList(NABlock(widths[s], hd, cfg.stage_kernels[s]) for _ in range(cfg.stage_depths[s]))
            for s in range(4))
        self.upsamples = nn.ModuleList(Upsample(widths[s], cfg.upsample_strides[s], cfg.upsample_reductions[s])
                                       for s in range(4))
        pixels = 3 * cfg.patch_size ** 2
        self.t_embedder = TimestepEmbedder(cfg.t_emb_dim)
        self.conv_in_x_t = nn.Linear(pixels, widths[4])
        self.shared_adaln = SharedModulation(cfg.t_emb_dim, widths[4])
        self.diff_blocks = nn.ModuleList(NABlock(widths[4], hd, cfg.stage5_kernel, modulated=True)
                                         for _ in range(cfg.stage_depths[4]))
        self.norm_out = RMSNorm(widths[4])
        self.conv_out = nn.Linear(widths[4], pixels)


class DiffusionDecoderVAE(CausalVideoVAE):
    family = "LTX-2 diffusion decoder (LTX-2.4 / 2.5)"

    def __init__(self, cfg: DiffusionDecoderConfig = DiffusionDecoderConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.latent_channels = cfg.latent_channels
        self.temporal_ratio, self.spatial_ratio = cfg.temporal_ratio, cfg.spatial_ratio
        self.decoder = Decoder(cfg)
        self.streaming = streaming(cfg)
        self.register_buffer("latents_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latents_std", torch.ones(cfg.latent_channels))
        self.normalized_latents = False
        self.noise_seed = HOST_NOISE_SEED
        self._noise: dict[str, ClipNoise] = {}
        # the diffusion stage's tokens (256 wide, one per 4x4 pixels) dominate: its input, the context, queries,
        # keys, values and the attention's output, about 16 channels per pixel each
        self.memory_profile = MemoryProfile(live_at_finest=8.0)

    @property
    def finest_width(self) -> int:
        return max(1, self.cfg.stage_channels[4] // self.cfg.patch_size ** 2)

    @property
    def encoder_finest_width(self) -> int:
        return 0

    def encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        raise FrameStreamError(f"the {self.family} only decodes; encode with the LTX-2 VAE, whose latents it reads")

    # --- conventions

    def use_host_conventions(self, host_module: nn.Module | None = None) -> "DiffusionDecoderVAE":
        """The host's LATENTs are normalised by the file's per-channel statistics (LTX-2's latent space); the
        host's module was built from the file's config, which its weights do not show: take it."""
        self.normalized_latents = True
        decoder = getattr(host_module, "decoder", None)
        if decoder is not None and hasattr(decoder, "diff_blocks"):
            self.follow(self.cfg.as_built_by_host(decoder))
        return self

    def follow(self, cfg: DiffusionDecoderConfig) -> "DiffusionDecoderVAE":
        """Runs these weights as ``cfg`` says (kernels, upsampling axes, timestep, prediction: what the weights
        do not show)."""
        cfg.check_runnable()
        d = self.decoder
        for blocks, kernel, upsample, stride in zip(d.det_stages, cfg.stage_kernels, d.upsamples,
                                                    cfg.upsample_strides):
            upsample.stride = stride
            for block in blocks:
                block.kernel = kernel
        for block in d.diff_blocks:
            block.kernel = cfg.stage5_kernel
        self.cfg = cfg
        self.temporal_ratio, self.spatial_ratio = cfg.temporal_ratio, cfg.spatial_ratio
        self.streaming = streaming(cfg)
        return self

    def configure(self, normalized_latents: bool | None = None, decode_timestep: float | None = None,
                  noise_seed: int | None = None) -> "DiffusionDecoderVAE":
        if normalized_latents is not None:
            self.normalized_latents = normalized_latents
        if noise_seed is not None:
            self.noise_seed = noise_seed
        return self

    # --- decode

    def decode_shared(self, z: torch.Tensor) -> torch.Tensor:
        """The latent un-normalised (the host's LATENTs are normalised)."""
        if self.normalized_latents and z.shape[2]:
            view = (-1, 1, 1, 1)
            z = z * self.latents_std.view(view).to(z.dtype) + self.latents_mean.view(view).to(z.dtype)
        return z

    def decode_tile(self, features: torch.Tensor) -> torch.Tensor:
        """This step's latent frames ``[B, C, t, h, w]`` -> ``[B, 3, t', 32h, 32w]``, the frames the blocks give
        now (at the clip's end, in this and the flush steps after it, the rest)."""
        state = active_state()
        ending = state is None or state.ending
        d = self.decoder
        x = d.conv_in(features.movedim(1, -1))  # [B, t, h, w, C]
        fed = fed_so_far(state, d.conv_in)
        length = self._length(state, fed + x.shape[1])
        if ending and fed + x.shape[1] == length:  # the clip's last frame is in: its copies after it
            x = self._with_ghost_frames(x)
        elif state is not None and x.shape[1]:
            state.write_frames(d.conv_in, x[:, -1:].movedim(-1, 1), "held")
        if state is not None:
            state.carries.writing(d.conv_in).fed = fed + x.shape[1]
        rate = 1
        for blocks, upsample in zip(d.det_stages, d.upsamples):
            for block in blocks:
                x = stream_block(block, x, rate)
            x = upsample(x)
            rate *= upsample.stride[0]
            if upsample.stride[0] > 1:  # the first latent frame stands for one frame: drop the one before it
                x = drop_first(upsample, x.movedim(1, 2), upsample.stride[0] - 1).movedim(2, 1)
        first = fed_so_far(state, d.conv_in_x_t)  # the clip's number of x[:, 0]
        x = x[:, : max(0, self.pixel_frames(length) - first)]  # not the frames of the copies
        return self._diffuse(x, first, tuple(features.shape[-2:]))

    def _length(self, state, fed: int) -> int:
        """The clip's latent frames (a stream's, known ahead; a whole clip: all it was given)."""
        if state is None:
            return fed
        if not state.expected_frames:
            raise RuntimeError(f"a {self.family} stream needs its length ahead (the noise is drawn for it)")
        return state.expected_frames

    def _with_ghost_frames(self, x: torch.Tensor) -> torch.Tensor:
        """The clip's last latent frame repeated after it (held from an earlier step when this one has none)."""
        last = x[:, -1:]
        if x.shape[1] == 0:
            last = active_state().read_frames(self.decoder.conv_in, x.movedim(-1, 1), "held").movedim(1, -1)
        return torch.cat([x, last.expand(-1, self.cfg.ghost_frames, -1, -1, -1)], dim=1)

    def _diffuse(self, context: torch.Tensor, first: int, grid: tuple[int, int]) -> torch.Tensor:
        """The diffusion stage on this step's new context frames ``[B, t, H, W, C]``, the clip's frames ``first
        ...``: one pass of its blocks from the noise at t = 1, each block reading the context of the frames it
        works on."""
        state = active_state()
        d, cfg = self.decoder, self.cfg
        t = torch.full((1,), cfg.timestep_scale, device=context.device)
        modulation = d.shared_adaln(d.t_embedder(t)).to(context.dtype)
        noise = self._noise_frames(first, context.shape[1], grid, context)
        x = d.conv_in_x_t(patchify(noise, cfg.patch_size))
        held = state.read_frames(d.diff_blocks, context.movedim(-1, 1)) if state is not None else None
        contexts = context if held is None else torch.cat([held.movedim(1, -1), context], dim=1)
        context_first = first + context.shape[1] - contexts.shape[1]
        for block in d.diff_blocks:
            start = fed_so_far(state, block) - context_first
            x = stream_block(block, x + block.context_proj(contexts[:, start : start + x.shape[1]]),
                             self.temporal_ratio, modulation)
        if state is not None:
            state.carries.writing(d.conv_in_x_t).fed = first + context.shape[1]
            waiting = fed_so_far(state, d.diff_blocks[-1], this_step=True) - context_first
            state.write_frames(d.diff_blocks, contexts[:, waiting:].movedim(-1, 1))
        pixels = unpatchify(d.conv_out(d.norm_out(x)), cfg.patch_size)
        if cfg.prediction == "v":  # one step from t = 1: the frames are the noise less the velocity
            out_first = fed_so_far(state, d.conv_out)
            if state is not None:
                state.carries.writing(d.conv_out).fed = out_first + pixels.shape[2]
            pixels = self._noise_frames(out_first, pixels.shape[2], grid, pixels, "output") - pixels
        return pixels  # the noise is one video's, the context each video's: [B, ...]

    def _noise_frames(self, first: int, count: int, grid: tuple[int, int], like: torch.Tensor,
                      role: str = "input") -> torch.Tensor:
        """The host's noise for frames ``[first, first + count)`` of this clip over this tile (``grid``: its latent
        rows and columns), ``[1, 3, count, H, W]`` on ``like``'s device and dtype. Each ``role`` (the stage's
        input; a v-predicting stage's output, which subtracts it) draws in order from its own generators."""
        state = active_state()
        latent_frames = state.expected_frames if state is not None and state.expected_frames else None
        frames = self.pixel_frames(latent_frames) if latent_frames else first + count
        window = state.window if state is not None else None
        grid = window.frame if window is not None else grid
        r = self.spatial_ratio
        size = (self.noise_seed, frames, grid[0] * r, grid[1] * r)
        source = self._noise.get(role)
        if source is None or (source.seed, source.frames, *source.size) != size:
            source = self._noise[role] = ClipNoise(*size)
        noise = source.draw(first, first + count)
        if window is not None:
            noise = noise[(..., *window.region(r, window.box))]
        return noise.to(like.device, like.dtype)


def streaming(cfg: DiffusionDecoderConfig) -> Streaming:
    """A frame waits for the frames its blocks' boxes reach after it, and the clip's end flushes out through
    as many latent frames' worth of steps (17.5 in the release); the noise is drawn for the clip's length."""
    return Streaming("delayed", delay=look_ahead(cfg), needs_length=True)


def look_ahead(cfg: DiffusionDecoderConfig) -> float:
    """Latent frames after its own that an output frame reads: each block's temporal radius at its stage's frame
    rate."""
    total, rate = 0.0, 1
    for depth, kernel, stride in zip(cfg.stage_depths, cfg.stage_kernels, cfg.upsample_strides):
        total += depth * (kernel[0] // 2) / rate
        rate *= stride[0]
    return total + cfg.stage_depths[4] * (cfg.stage5_kernel[0] // 2) / rate
