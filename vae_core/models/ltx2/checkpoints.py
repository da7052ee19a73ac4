"""LTX-2 VAE checkpoints: diffusers' layout and Lightricks' (the host's), the configuration from shapes.

Lightricks' layout (their release files, under ``vae.`` in the whole-model
checkpoint, and what the newest host loads) numbers each side's blocks in one
flat list: the encoder's resnet groups and downsamplers alternate and the mid
block comes last; the decoder's mid block comes first, then upsamplers and
resnet groups alternate. diffusers nests them. The rest differs by a few names
(``res_blocks``, ``last_time_embedder``, ``per_channel_statistics``).

Both layouts are also LTX-Video 0.9's, and LTX-2.0's tensors have the shapes of
0.9.5's. What tells them apart is what diffusers' own loader goes by: every
0.9.x release from 0.9.1 on conditions its decoder on a timestep, LTX-2.0 does
not; 0.9.0 upsamples with wider convs (8x channels, LTX-2.0 4x); and LTX-2.3's
decoder scales time and space in separate upsamplers (2x and 1x channels),
which no 0.9 release does. A timestep-conditioned file shaped like 0.9.5 is
read as LTX-Video 0.9 (that family computes it the same way).

What the weights do not say comes from the file's config when it has one
(``causal_decoder``, the spatial padding, the upsamplers' residual shortcuts),
otherwise from the release the structure is: 2.0 (three upsamplers scaling
space and time together, residual, the decoder padding by reflection) or 2.3
(no residual shortcuts, zeros).
"""

from __future__ import annotations

import json
import math
import re
from typing import Mapping

import torch

from ...errors import FrameStreamError
from ..assembly import assemble, count_indices
from .model import STRIDES, LTX2Config, LTX2VideoVAE

TEMPORAL_RATIO, SPATIAL_RATIO = 8, 32  # every release's compression
_UPSAMPLER = re.compile(r"decoder\.up_blocks\.\d+\.(?:upsamplers\.0\.)?conv\.conv\.weight$")
_FLAT = re.compile(r"(encoder\.down_blocks|decoder\.up_blocks)\.(\d+)\.(.*)")
_PARTS = [("res_blocks.", "resnets."), ("norm3.norm.", "norm3.")]
_TOP = [("decoder.last_time_embedder.", "decoder.time_embedder."),
        ("decoder.last_scale_shift_table", "decoder.scale_shift_table"),
        ("per_channel_statistics.mean-of-means", "latents_mean"),
        ("per_channel_statistics.std-of-means", "latents_std")]
_KINDS = {4: "spatial", 2: "temporal", 8: "spatiotemporal"}  # a space/time-to-depth downsampler's scale


def is_original_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    return any(re.match(r"(decoder\.up_blocks|encoder\.down_blocks)\.\d+\.res_blocks\.", k) for k in sd)


def is_diffusers_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """LTX's resnets have parameter-free norms: CogVideoX's and HunyuanVideo's (otherwise alike) store some."""
    return "decoder.mid_block.resnets.0.conv1.conv.weight" in sd and \
        not any(k.startswith("decoder.mid_block.resnets.0.norm1.") for k in sd)


def upsampler_scales(sd: Mapping[str, torch.Tensor]) -> list[float]:
    """Output over input channels of every decoder upsampler's conv, in either layout: 4 for LTX-2.0's (and
    0.9.1's), 8 for 0.9.0's; 2.3 adds 1 and 2 (time or space alone)."""
    return [v.shape[0] / v.shape[1] for k, v in sd.items() if _UPSAMPLER.match(k) and getattr(v, "ndim", 0) == 5]


def recognises(sd: Mapping[str, torch.Tensor]) -> bool:
    if not (is_original_layout(sd) or is_diffusers_layout(sd)):
        return False
    scales = upsampler_scales(sd)
    conditioned = "decoder.last_scale_shift_table" in sd or "decoder.scale_shift_table" in sd
    return any(s not in (4, 8) for s in scales) or (not conditioned and 4 in scales)


def original_to_diffusers(sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    encoder_entries = count_indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    _check_alternation(sd, source)
    out = {}
    for key, value in sd.items():
        if key.startswith("per_channel_statistics.") and key not in dict(_TOP):
            continue  # channel, mean-of-stds, ...: neither decode nor encode uses them
        for old, new in _TOP:
            if key.startswith(old):
                key = new + key[len(old):]
        m = _FLAT.match(key)
        if m:
            index = int(m.group(2))
            if m.group(1) == "encoder.down_blocks":
                block = "mid_block" if index == encoder_entries - 1 else \
                    f"down_blocks.{index // 2}" + (".downsamplers.0" if index % 2 else "")
                key = f"encoder.{block}.{m.group(3)}"
            else:
                block = "mid_block" if index == 0 else \
                    f"up_blocks.{(index - 1) // 2}" + (".upsamplers.0" if index % 2 else "")
                key = f"decoder.{block}.{m.group(3)}"
        for old, new in _PARTS:
            key = key.replace(old, new)
        out[key] = value
    return out


def diffusers_to_original(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`original_to_diffusers` (for writing host-layout files and for tests)."""
    downs = count_indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    out = {}
    for key, value in sd.items():
        if ".conv_in.conv1." in key and key.startswith("decoder.up_blocks."):
            raise FrameStreamError("an up block with its own conv_in has no place in Lightricks' layout")
        for new, old in _TOP:
            if key.startswith(old):
                key = new + key[len(old):]
        m = re.match(r"encoder\.(down_blocks\.(\d+)(\.downsamplers\.0)?|mid_block)\.(.*)", key)
        if m:
            index = 2 * downs if m.group(1) == "mid_block" else 2 * int(m.group(2)) + (1 if m.group(3) else 0)
            key = f"encoder.down_blocks.{index}.{m.group(4)}"
        m = re.match(r"decoder\.(up_blocks\.(\d+)(\.upsamplers\.0)?|mid_block)\.(.*)", key)
        if m:
            index = 0 if m.group(1) == "mid_block" else 2 * int(m.group(2)) + (1 if m.group(3) else 2)
            key = f"decoder.up_blocks.{index}.{m.group(4)}"
        for new, old in _PARTS:
            key = key.replace(old, new)
        out[key] = value
    return out


def _check_alternation(sd: Mapping[str, torch.Tensor], source: str) -> None:
    """Lightricks' flat lists of a release: resnet groups and resamplers alternate, resnets at both ends."""
    for side, resampler_parity in (("encoder.down_blocks", 1), ("decoder.up_blocks", 1)):
        entries = count_indices(sd, rf"{re.escape(side)}\.(\d+)\.")
        for index in range(entries):
            resnets = any(k.startswith(f"{side}.{index}.res_blocks.") for k in sd)
            if resnets == (index % 2 == resampler_parity):
                what = "a resnet group" if resnets else "a resampler"
                raise FrameStreamError(f"{source} has the LTX-2 layout but its structure matches no known LTX-2 "
                                       f"release: {side}.{index} is {what} out of turn")


def _width(sd: Mapping[str, torch.Tensor], prefix: str) -> int:
    return sd[f"{prefix}.resnets.0.conv1.conv.weight"].shape[0]


def _unknown(source: str, what: str) -> FrameStreamError:
    return FrameStreamError(f"{source} looks like an LTX-2 VAE but its structure matches no known LTX-2 release: "
                            f"{what}")


def _encoder(sd: Mapping[str, torch.Tensor], source: str) -> dict:
    downs = count_indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    layers, kinds, widths, width = [], [], [], sd["encoder.conv_in.conv.weight"].shape[0]
    for i in range(downs):
        prefix = f"encoder.down_blocks.{i}"
        layers.append(count_indices(sd, rf"{prefix}\.resnets\.(\d+)\."))
        plain = sd.get(f"{prefix}.downsamplers.0.conv.weight")
        if plain is not None:  # a strided conv keeps the width
            kinds.append("conv")
            widths.append(width)
            continue
        conv = sd[f"{prefix}.downsamplers.0.conv.conv.weight"]
        out = _width(sd, f"encoder.down_blocks.{i + 1}") if i + 1 < downs else _width(sd, "encoder.mid_block")
        kind = _KINDS.get(out // conv.shape[0])
        if kind is None or out % conv.shape[0]:
            raise _unknown(source, f"encoder downsampler {i} maps {conv.shape[1]} to {out} channels")
        kinds.append(kind)
        widths.append(width := out)
    return dict(encoder_in_width=sd["encoder.conv_in.conv.weight"].shape[0], encoder_widths=tuple(widths),
                encoder_layers=tuple(layers), encoder_kinds=tuple(kinds),
                encoder_mid_layers=count_indices(sd, r"encoder\.mid_block\.resnets\.(\d+)\."))


def _decoder(sd: Mapping[str, torch.Tensor], source: str, config: Mapping) -> dict:
    ups = count_indices(sd, r"decoder\.up_blocks\.(\d+)\.")
    widths, layers, conv_in, strides, factors = [], [], [], [], []
    for i in range(ups):
        prefix = f"decoder.up_blocks.{i}"
        layers.append(count_indices(sd, rf"{prefix}\.resnets\.(\d+)\."))
        conv_in.append(f"{prefix}.conv_in.conv1.conv.weight" in sd)
        width = _width(sd, prefix) if layers[-1] else sd[f"{prefix}.conv_in.conv1.conv.weight"].shape[0]
        widths.append(width)
        conv = sd.get(f"{prefix}.upsamplers.0.conv.conv.weight")
        if conv is None:
            strides.append(None)
            factors.append(1)
            continue
        stride = STRIDES.get(conv.shape[0] / width)
        if stride is None or conv.shape[1] % width:
            raise _unknown(source, f"decoder upsampler {i} maps {conv.shape[1]} to {conv.shape[0]} channels "
                                   f"ahead of {width}-channel resnets")
        strides.append(stride)
        factors.append(conv.shape[1] // width)
    residual = _residual(config, strides, factors, source)
    noise = [f"decoder.{block}.resnets.0.per_channel_scale1" in sd
             for block in ["mid_block"] + [f"up_blocks.{i}" for i in range(ups)]]
    return dict(decoder_in_width=sd["decoder.conv_in.conv.weight"].shape[0],
                decoder_mid_layers=count_indices(sd, r"decoder\.mid_block\.resnets\.(\d+)\."),
                decoder_widths=tuple(widths), decoder_layers=tuple(layers), decoder_conv_in=tuple(conv_in),
                upsample_strides=tuple(strides), upsample_residual=residual, upsample_factor=tuple(factors),
                decoder_noise=tuple(noise),
                timestep_conditioning="decoder.time_embedder.timestep_embedder.linear_1.weight" in sd)


def _residual(config: Mapping, strides: list, factors: list[int], source: str) -> tuple[bool, ...]:
    """The upsamplers' residual shortcuts (no weights): the config's ``decoder_blocks`` (listed from the pixels
    inward), else the release's: 2.0's (space and time together, channels halved) have them, 2.3's do not."""
    blocks = config.get("decoder_blocks")
    present = [s is not None for s in strides]
    if blocks:
        found = [bool((params if isinstance(params, dict) else {}).get("residual", False))
                 for name, params in reversed(blocks) if str(name).startswith("compress")]
        if len(found) != sum(present):
            raise FrameStreamError(f"{source} carries a config whose decoder_blocks list {len(found)} upsamplers; "
                                   f"its weights hold {sum(present)}")
        it = iter(found)
        return tuple(next(it) if p else False for p in present)
    release_20 = all(s in (None, (2, 2, 2)) for s in strides)
    return tuple(bool(p and release_20 and f != 1) for p, f in zip(present, factors))


def vae_config(metadata: Mapping[str, str] | None, source: str = "checkpoint") -> dict:
    """The ``vae`` part of the config JSON a Lightricks checkpoint carries in its metadata ({} when silent)."""
    if not metadata or "config" not in metadata:
        return {}
    try:
        vae = json.loads(metadata["config"]).get("vae") or {}
    except (ValueError, AttributeError):
        raise FrameStreamError(f"{source} carries a config in its metadata that is not a JSON object; expected "
                               "the LTX-2 checkpoint's own config") from None
    if not isinstance(vae, dict):
        raise FrameStreamError(f"{source}'s metadata config has a 'vae' entry that is not an object")
    return vae


def infer_config(sd: Mapping[str, torch.Tensor], config: Mapping | None = None,
                 source: str = "checkpoint") -> LTX2Config:
    """The configuration of a diffusers-layout state dict (``config``: the file's, for what weights do not say)."""
    config = config or {}
    patch = round((sd["encoder.conv_in.conv.weight"].shape[1] // 3) ** 0.5)
    cfg = LTX2Config(latent_channels=sd["decoder.conv_in.conv.weight"].shape[1], patch_size=patch,
                     **_encoder(sd, source), **_decoder(sd, source, config),
                     decoder_causal=bool(config.get("causal_decoder", config.get("decoder_causal", False))))
    strides = [s for s in cfg.upsample_strides if s is not None]
    decoder = (math.prod(s[0] for s in strides), patch * math.prod(s[1] for s in strides))
    time_down = {"temporal": 2, "spatiotemporal": 2, "conv": 2}
    space_down = {"spatial": 2, "spatiotemporal": 2, "conv": 2}
    encoder = (math.prod(time_down.get(k, 1) for k in cfg.encoder_kinds),
               patch * math.prod(space_down.get(k, 1) for k in cfg.encoder_kinds))
    if decoder != (TEMPORAL_RATIO, SPATIAL_RATIO) or encoder != decoder:
        raise _unknown(source, f"the decoder scales {decoder[0]}x in time and {decoder[1]}x in space, the encoder "
                               f"{encoder[0]}x and {encoder[1]}x; every release scales {TEMPORAL_RATIO}x and "
                               f"{SPATIAL_RATIO}x")
    return cfg


def spatial_padding(config: Mapping, cfg: LTX2Config) -> tuple[str, str]:
    """(encoder, decoder) padding of height and width: the config's, else the release's (2.0's decoder reflects,
    2.3's and every encoder pad with zeros)."""
    release_20 = all(s in (None, (2, 2, 2)) for s in cfg.upsample_strides)
    shared = config.get("spatial_padding_mode")
    encoder = config.get("encoder_spatial_padding_mode", shared or "zeros")
    decoder = config.get("decoder_spatial_padding_mode", shared or ("reflect" if release_20 else "zeros"))
    return str(encoder), str(decoder)


def build_ltx2(sd: Mapping[str, torch.Tensor], source: str = "checkpoint",
               metadata: Mapping[str, str] | None = None) -> LTX2VideoVAE:
    """An :class:`LTX2VideoVAE` holding exactly the given tensors (no copy), in either layout; ``metadata`` is the
    file's (its config says what the weights do not)."""
    config = vae_config(metadata, source)
    sd = original_to_diffusers(sd, source) if is_original_layout(sd) else dict(sd)
    try:
        cfg = infer_config(sd, config, source)
    except KeyError as err:
        raise FrameStreamError(f"{source} looks like an LTX-2 VAE but is incomplete: missing {err}") from None
    if "latents_mean" not in sd:  # the statistics are not part of every export
        sd = {**sd, "latents_mean": torch.zeros(cfg.latent_channels), "latents_std": torch.ones(cfg.latent_channels)}
    return assemble(lambda: LTX2VideoVAE(cfg), sd, source).pad_spatially(*spatial_padding(config, cfg))
