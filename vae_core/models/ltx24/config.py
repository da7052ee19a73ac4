"""The diffusion decoder's configuration: the release's defaults, and the file's own where it states one."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ...errors import FrameStreamError

Kernel = tuple[int, int, int]


@dataclass(frozen=True)
class DiffusionDecoderConfig:
    latent_channels: int = 128
    patch_size: int = 4  # pixels per stage-5 token, each way
    head_dim: int = 64
    stage_channels: tuple[int, ...] = (2048, 1024, 512, 512, 256)  # stages 1-4, then the diffusion stage
    stage_depths: tuple[int, ...] = (4, 6, 4, 2, 8)
    stage_kernels: tuple[Kernel, ...] = ((3, 7, 7), (3, 7, 7), (3, 5, 5), (3, 5, 5))  # (frames, rows, columns)
    upsample_strides: tuple[Kernel, ...] = ((1, 2, 2), (2, 1, 1), (2, 2, 2), (2, 2, 2))
    upsample_reductions: tuple[int, ...] = (2, 2, 1, 2)
    stage5_kernel: Kernel = (11, 11, 11)
    t_emb_dim: int = 384
    timestep_scale: float = 1000.0
    steps: int = 1
    prediction: str = "x0"  # what the diffusion stage predicts: "x0" (the frames) or "v"

    @property
    def temporal_ratio(self) -> int:
        return math.prod(s[0] for s in self.upsample_strides)

    @property
    def spatial_ratio(self) -> int:
        return math.prod(s[1] for s in self.upsample_strides) * self.patch_size

    @property
    def ghost_frames(self) -> int:
        """Copies of the last latent frame appended so that the clip's end has its neighbours (2)."""
        return self.stage_kernels[0][0] // 2 * 2

    def check_runnable(self) -> None:
        """One message for what FrameStream does not run: several denoising steps, an unknown prediction."""
        if self.steps != 1:
            raise FrameStreamError(f"it denoises in {self.steps} steps; FrameStream runs the release's one-step "
                                   "decoder")
        if self.prediction not in ("x0", "v"):
            raise FrameStreamError(f"its diffusion stage predicts {self.prediction!r}, not 'x0' or 'v'")

    @classmethod
    def from_host(cls, vae: dict) -> "DiffusionDecoderConfig":
        """From the ``vae`` part of the file's ``config`` metadata, as the host reads it."""
        dec, default = vae.get("decoder", {}), cls()
        upsamples = dec.get("upsamples")
        return cls(
            latent_channels=dec.get("in_channels", default.latent_channels),
            patch_size=dec.get("patch_size", default.patch_size),
            head_dim=dec.get("head_dim", default.head_dim),
            stage_channels=tuple(dec.get("stage_channels", default.stage_channels)),
            stage_depths=tuple(dec.get("stage_depths", default.stage_depths)),
            stage_kernels=tuple(tuple(k) for k in dec["stage_kernels"][:4]) if "stage_kernels" in dec
            else default.stage_kernels,
            upsample_strides=tuple(tuple(u[0]) for u in upsamples) if upsamples else default.upsample_strides,
            upsample_reductions=tuple(u[1] for u in upsamples) if upsamples else default.upsample_reductions,
            stage5_kernel=tuple(dec.get("stage5_kernel", default.stage5_kernel)),
            t_emb_dim=dec.get("t_emb_dim", default.t_emb_dim),
            timestep_scale=float(dec.get("timestep_scale_multiplier", default.timestep_scale)),
            steps=dec.get("default_num_inference_steps", default.steps),
            prediction=vae.get("model_output_type", default.prediction))

    def as_built_by_host(self, decoder) -> "DiffusionDecoderConfig":
        """This config with what the host's module (``NADiffusionDecoder``) was built with beyond its weights:
        its kernels, upsampling axes, timestep scale, steps and prediction (from the file's config)."""
        timesteps = getattr(decoder, "default_inference_timesteps", None)
        return replace(
            self, stage_kernels=tuple(tuple(stage[0].attn.kernel_size) for stage in decoder.det_stages),
            upsample_strides=tuple(tuple(up.stride) for up in decoder.upsamples),
            stage5_kernel=tuple(decoder.diff_blocks[0].attn.kernel_size),
            timestep_scale=float(getattr(decoder, "timestep_scale_multiplier", self.timestep_scale)),
            steps=timesteps.numel() if timesteps is not None else self.steps,
            prediction=getattr(decoder, "model_output_type", self.prediction))

    @classmethod
    def from_diffusers(cls, config: dict) -> "DiffusionDecoderConfig":
        """From diffusers' ``LTX2VideoDiffusionDecoderModel`` config (its ``config.json``)."""
        default, get = cls(), config.get
        return cls(
            latent_channels=get("latent_channels", default.latent_channels),
            patch_size=get("patch_size", default.patch_size),
            head_dim=get("decoder_head_dim", default.head_dim),
            stage_channels=tuple(get("decoder_stage_channels", default.stage_channels)),
            stage_depths=tuple(get("decoder_stage_depths", default.stage_depths)),
            stage_kernels=tuple(tuple(k) for k in get("decoder_stage_kernels", default.stage_kernels)),
            upsample_strides=tuple(tuple(s) for s in get("decoder_upsample_strides", default.upsample_strides)),
            upsample_reductions=tuple(get("decoder_upsample_channel_reductions", default.upsample_reductions)),
            stage5_kernel=tuple(get("decoder_stage5_kernel", default.stage5_kernel)),
            t_emb_dim=get("decoder_t_emb_dim", default.t_emb_dim),
            timestep_scale=float(get("decoder_timestep_scale_multiplier", default.timestep_scale)),
            steps=get("decoder_num_inference_steps", default.steps),
            prediction=get("decoder_model_output_type", default.prediction))
