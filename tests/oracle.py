"""The reference models the tests build: each family's diffusers VAE at reduced width on random weights (its
sizes, its builder, its checkpoint layouts written independently of FrameStream's loaders), Wan's
frame-at-a-time decode loop, and random-weight TAEHV models.

Test modules share builders through this module (they never import one another); benchmarks use it too. It
imports FrameStream only inside functions: benchmarks/exactness.py imports it before it loads the checkout.
"""

from __future__ import annotations

import functools
import math
import re
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from framestream.vae_core.models.taehv.model import TinyVideoConfig

# --- Wan 2.1 / 2.2 ---------------------------------------------------------------------------------------------

WAN21_SMALL = dict(base_dim=8, z_dim=16)
WAN22_SMALL = dict(base_dim=8, decoder_base_dim=12, z_dim=48, is_residual=True, in_channels=12, out_channels=12,
                   patch_size=2, scale_factor_spatial=16)


def diffusers_wan(config: dict, seed: int = 0):
    """diffusers' AutoencoderKLWan with every parameter random (norm gains too), in eval mode."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    model = AutoencoderKLWan(**config).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed + 1)
    for name, param in model.named_parameters():
        if name.endswith("gamma"):
            param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=gen))
        elif name.endswith("bias"):
            param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    return model


@torch.no_grad()
def diffusers_decode_raw(model, z: torch.Tensor) -> torch.Tensor:
    """The reference frame-at-a-time decode, before diffusers' clamp (so no difference hides in saturation)."""
    from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify

    model.clear_cache()
    x = model.post_quant_conv(z)
    outs = []
    for i in range(z.shape[2]):
        model._conv_idx = [0]
        outs.append(model.decoder(x[:, :, i : i + 1], feat_cache=model._feat_map, feat_idx=model._conv_idx,
                                  first_chunk=i == 0))
    out = torch.cat(outs, 2)
    model.clear_cache()
    return unpatchify(out, model.config.patch_size) if model.config.patch_size else out


# --- HunyuanVideo ----------------------------------------------------------------------------------------------

HUNYUAN_SMALL = dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1)  # 32 groups, as every release


def diffusers_hunyuan(seed=0):
    """Weights scaled so the random decoder is not chaotic: a trained VAE responds smoothly to small changes in
    its statistics, and a default-initialised one amplifies them without bound (see the README's figures)."""
    from diffusers import AutoencoderKLHunyuanVideo

    torch.manual_seed(seed)
    model = AutoencoderKLHunyuanVideo(**HUNYUAN_SMALL).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    model.use_framewise_decoding = model.use_framewise_encoding = False  # the whole clip in one call
    return model


def to_host_layout(sd):
    """The host's (Stable Diffusion) layout, written independently from ComfyUI's diffusers converter."""
    out = {}
    for key, value in sd.items():
        for old, new in [("conv_shortcut", "nin_shortcut"), ("conv_norm_out", "norm_out"),
                         ("mid_block.resnets.0", "mid.block_1"), ("mid_block.resnets.1", "mid.block_2"),
                         ("mid_block.attentions.0.group_norm", "mid.attn_1.norm"), ("to_out.0", "proj_out"),
                         ("mid_block.attentions.0.to_", "mid.attn_1."), ("mid_block.attentions.0.", "mid.attn_1."),
                         ("downsamplers.0", "downsample"), ("upsamplers.0", "upsample"), ("resnets.", "block.")]:
            key = key.replace(old, new)
        key = key.replace("down_blocks.", "down.")
        if key.startswith("decoder.up_blocks."):
            _, _, index, rest = key.split(".", 3)
            key = f"decoder.up.{3 - int(index)}.{rest}"
        if ".mid.attn_1." in key and key.endswith("weight") and value.ndim == 2:
            value = value.reshape(*value.shape, 1, 1, 1)  # the host keeps these as 1x1x1 convs
        out[key] = value
    return out


# --- HunyuanVideo 1.5 ------------------------------------------------------------------------------------------

# 16x16 spatial, 4x temporal as released, at widths 16-64 and one resnet per block (two per decoder block)
HV15_SMALL = dict(block_out_channels=(16, 32, 32, 64, 64), layers_per_block=1)


def scale_of(like: torch.Tensor) -> float:
    """Every parameter is random, RMS gains and biases too (N(0, 0.3)), so nothing hides behind an identity;
    weights are N(0, 0.7 / sqrt(fan-in)). The model then stays sane at every width: frames of std 0.3-0.5 that
    hardly saturate, latents of a few units. N(0, 0.15) throughout makes encoder latents of hundreds at widths
    16-64 (of 4e4 at full width: the downsamplers' convs have no norm before them), and 1 / sqrt(fan-in) a
    decoder whose frames saturate by a third (docs/hunyuan15.md)."""
    return 0.7 * like[0].numel() ** -0.5 if like.ndim > 1 else 0.3


def diffusers_hv15(config=HV15_SMALL, seed=0):
    from diffusers import AutoencoderKLHunyuanVideo15

    torch.manual_seed(seed)
    model = AutoencoderKLHunyuanVideo15(**config).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(scale_of(param) * torch.randn(param.shape, generator=gen))
    return model


# --- CogVideoX -------------------------------------------------------------------------------------------------

COGVIDEOX_SMALL = dict(block_out_channels=(32, 32, 64, 64), layers_per_block=1)  # 32 groups, as every release


def diffusers_cogvideox(seed=0, **config):
    from diffusers import AutoencoderKLCogVideoX

    torch.manual_seed(seed)
    model = AutoencoderKLCogVideoX(**{**COGVIDEOX_SMALL, **config}).eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed + 1)
    for name, param in model.named_parameters():  # no unit gains or zero shifts to hide mistakes
        if "norm" in name and name.endswith("weight"):
            param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=gen))
        elif name.endswith("bias"):
            param.copy_(0.1 * torch.randn(param.shape, generator=gen))
    return model


def cogvideox_to_original(sd):
    """The original (SAT) layout, from diffusers' conversion table run backwards."""
    ups = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("decoder.up_blocks."))
    out = {"loss.logvar": torch.zeros(())}  # the training loss's weights ride along in the release
    for key, value in sd.items():
        for side in ("encoder", "decoder"):
            for i in range(2):
                key = key.replace(f"{side}.mid_block.resnets.{i}", f"{side}.mid.block_{i + 1}")
        key = key.replace("resnets.", "block.").replace("down_blocks.", "down.").replace("downsamplers.0", "downsample")
        key = key.replace("upsamplers.0", "upsample").replace("conv_shortcut", "nin_shortcut")
        if key.startswith("decoder.up_blocks."):
            _, _, index, rest = key.split(".", 3)
            key = f"decoder.up.{ups - 1 - int(index)}.{rest}"
        out[key] = value
    return out


# --- LTX-Video 0.9.x ------------------------------------------------------------------------------------------

LTX_SMALL = dict(block_out_channels=(8, 16, 32, 32), decoder_block_out_channels=(8, 16, 32, 32),
                 layers_per_block=(1, 1, 1, 1, 2), decoder_layers_per_block=(2, 1, 1, 1, 2))
# 0.9.1's decoder shape (three upsampling blocks with residual depth-to-space, timestep conditioning), no noise
SMALL_091 = dict(block_out_channels=(8, 16, 32, 32), decoder_block_out_channels=(16, 32, 64),
                 layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 2),
                 decoder_spatio_temporal_scaling=(True, True, True), decoder_inject_noise=(False,) * 4,
                 upsample_residual=(True,) * 3, upsample_factor=(2,) * 3, timestep_conditioning=True)
# 0.9.1 as released: its decoder adds scaled spatial noise after each conv of the finer blocks' resnets
SMALL_091_NOISE = dict(SMALL_091, decoder_inject_noise=(False, True, True, True))
# 0.9.5's encoder: space- and time-to-depth downsamplers with averaged shortcuts
SMALL_095 = dict(SMALL_091, block_out_channels=(8, 16, 32, 32, 64), spatio_temporal_scaling=(True,) * 4,
                 down_block_types=("LTXVideo095DownBlock3D",) * 4,
                 downsample_type=("spatial", "temporal", "spatiotemporal", "spatiotemporal"))


def diffusers_ltx(config, seed=0):
    from diffusers import AutoencoderKLLTXVideo

    torch.manual_seed(seed)
    model = AutoencoderKLLTXVideo(**config).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.parameters():  # no zero-initialised tables or shortcuts to hide mistakes
            param.copy_(0.15 * torch.randn(param.shape, generator=gen))
    return model


def ltx_to_original(sd, version):
    """The original (Lightricks) layout, written from the release's block list: the inverse of the loader's
    renaming, which diffusers' own single-file converter must map back (checked in test_ltx.py)."""
    from framestream.vae_core.models.ltx import checkpoints as lc

    decoder = lc._DECODER_090 if version == "0.9.0" else lc._DECODER_091
    encoder = lc._ENCODER_095 if version == "0.9.5" else lc._ENCODER_090
    out = {}
    for key, value in sd.items():
        if key in ("latents_mean", "latents_std"):
            out[{"latents_mean": "per_channel_statistics.mean-of-means",
                 "latents_std": "per_channel_statistics.std-of-means"}[key]] = value
            continue
        side, _, rest = key.partition(".")
        table = decoder if side == "decoder" else encoder
        for index, path in sorted(enumerate(table), key=lambda item: -len(item[1])):
            if rest.startswith(path + "."):
                rest = f"{'up_blocks' if side == 'decoder' else 'down_blocks'}.{index}.{rest[len(path) + 1:]}"
                break
        rest = rest.replace("resnets.", "res_blocks.").replace("conv_shortcut.conv.", "conv_shortcut.")
        rest = rest.replace("norm3.", "norm3.norm.")
        if side == "decoder" and version != "0.9.0":
            rest = rest.replace("time_embedder.", "last_time_embedder.", 1) if rest.startswith("time_embedder.") \
                else rest.replace("scale_shift_table", "last_scale_shift_table") if rest == "scale_shift_table" else rest
        out[f"{side}.{rest}"] = value
    return out


# --- LTX-2 ----------------------------------------------------------------------------------------------------

LTX2_COMMON = dict(spatial_compression_ratio=32, temporal_compression_ratio=8, decoder_causal=False)
# 2.0's shape: three upsamplers scaling space and time together, residual, reflect padding in the decoder
SMALL_20 = dict(LTX2_COMMON, block_out_channels=(8, 16, 32, 32), decoder_block_out_channels=(8, 16, 32),
                layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 2))
# 2.3's shape: time and space also scaled apart, no residual shortcuts, zero padding; here timestep-conditioned
SMALL_23T = dict(SMALL_20, decoder_block_out_channels=(8, 16, 16, 32), decoder_layers_per_block=(1, 1, 1, 1, 2),
                 decoder_spatio_temporal_scaling=(True,) * 4, decoder_inject_noise=(False,) * 5,
                 upsample_type=("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
                 upsample_residual=(False,) * 4, upsample_factor=(2, 2, 1, 2), timestep_conditioning=True,
                 decoder_spatial_padding_mode="zeros")
# decoder noise after the convs of the mid block and two up blocks
SMALL_NOISE = dict(SMALL_20, decoder_inject_noise=(True, False, True, True))
CONFIGS = {"2.0": SMALL_20, "2.3+t": SMALL_23T, "2.0+noise": SMALL_NOISE}


def diffusers_ltx2(config, seed=0, scale=0.15):
    """Every parameter and buffer random (norm gains, noise scales, timestep tables, statistics): uniform with
    the standard deviation ``scale``, written straight into an uninitialised model (full width is 0.5 G values)."""
    from diffusers import AutoencoderKLLTX2Video

    with torch.device("meta"):
        model = AutoencoderKLLTX2Video(**config)
    model = model.to_empty(device="cpu").eval().requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        param.uniform_(-scale * 3**0.5, scale * 3**0.5, generator=gen)
    model.latents_mean.normal_(generator=gen)
    model.latents_std.uniform_(0.5, 1.5, generator=gen)
    return model


# --- Mochi ----------------------------------------------------------------------------------------------------

# 32 groups and 32-channel heads, as every release; genmo's down blocks need each width to differ from the last
MOCHI_SMALL = dict(encoder_block_out_channels=(32, 64, 96, 128), decoder_block_out_channels=(32, 64, 96, 128),
                   layers_per_block=(1, 1, 2, 1, 1))


def diffusers_mochi(config=MOCHI_SMALL, seed=0, std=0.1):
    """diffusers' model with every parameter drawn afresh (no zero-initialised bias or unit norm gain hides a
    mistake); built on the meta device first, since the full model's default init is slow."""
    from diffusers import AutoencoderKLMochi

    with torch.device("meta"):
        model = AutoencoderKLMochi(**config)
    model = model.to_empty(device="cpu").eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, std, generator=gen)
    return model


_STACK = {"norm1.norm_layer": 0, "conv1.conv": 2, "norm2.norm_layer": 3, "conv2.conv": 5}  # genmo's resnet stack


def _count(sd, pattern):
    return 1 + max((int(m.group(1)) for k in sd for m in [re.match(pattern, k)] if m), default=-1)


def to_genmo(sd):
    """genmo's layout (the host's, with its decoder. / encoder. prefixes), written from genmo's module list: the
    inverse of the loader's renaming, with query, key and value stacked into one qkv matrix."""
    ups, downs = _count(sd, r"decoder\.up_blocks\.(\d+)\."), _count(sd, r"encoder\.down_blocks\.(\d+)\.")
    first = _count(sd, r"encoder\.block_in\.resnets\.(\d+)\.")
    resnet_names = {  # diffusers' stage -> genmo's name of its resnet i
        "decoder.block_in": lambda i: f"decoder.blocks.0.{i + 1}",
        "decoder.block_out": lambda i: f"decoder.blocks.{ups + 1}.{i}",
        "encoder.block_in": lambda i: f"encoder.layers.{i + 1}",
        "encoder.block_out": lambda i: f"encoder.layers.{first + downs + 1 + i}",
        **{f"decoder.up_blocks.{u}": (lambda u: lambda i: f"decoder.blocks.{u + 1}.blocks.{i}")(u)
           for u in range(ups)},
        **{f"encoder.down_blocks.{d}": (lambda d: lambda i: f"encoder.layers.{first + 1 + d}.layers.{i + 1}")(d)
           for d in range(downs)},
    }
    layers = {"decoder.conv_in": "decoder.blocks.0.0", "decoder.proj_out": "decoder.output_proj",
              "encoder.proj_in": "encoder.layers.0", "encoder.norm_out.norm_layer": "encoder.output_norm",
              "encoder.proj_out": "encoder.output_proj",
              **{f"decoder.up_blocks.{u}.proj": f"decoder.blocks.{u + 1}.proj" for u in range(ups)},
              **{f"encoder.down_blocks.{d}.conv_in.conv": f"encoder.layers.{first + 1 + d}.layers.0"
                 for d in range(downs)}}
    out = {}
    for key, value in sd.items():
        head, _, tail = key.rpartition(".")
        if head in layers:
            out[f"{layers[head]}.{tail}"] = value
            continue
        stage, kind, index, part = re.match(r"(.*)\.(resnets|norms|attentions)\.(\d+)\.(.*)", key).groups()
        resnet = resnet_names[stage](int(index))
        if kind == "resnets":
            out[f"{resnet}.stack.{_STACK[part.rpartition('.')[0]]}.{tail}"] = value
        elif kind == "norms":
            out[f"{resnet}.attn_block.norm.{tail}"] = value
        elif part.startswith("to_out.0."):
            out[f"{resnet}.attn_block.attn.out.{tail}"] = value
        elif part == "to_q.weight":
            base = key[: -len("to_q.weight")]
            out[f"{resnet}.attn_block.attn.qkv.weight"] = torch.cat([sd[f"{base}to_{n}.weight"] for n in "qkv"])
    return out


# --- image VAEs (SD-style KL autoencoders, Flux 2, TAESD) ---------------------------------------------------

FOUR = dict(down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
SD = dict(FOUR, block_out_channels=(32, 32, 64, 64), layers_per_block=1, latent_channels=4)  # 32 groups, as released
SD3 = dict(SD, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)  # also Flux's structure
FLUX2 = dict(SD, latent_channels=32, decoder_block_out_channels=(32, 64, 64, 96))  # 128 channels once patched
TINY = dict(encoder_block_out_channels=(16,) * 4, decoder_block_out_channels=(16,) * 4,
            num_encoder_blocks=(1, 2, 1, 2), num_decoder_blocks=(2, 1, 2, 1))
IMAGE_VAE = "image VAE (SD 1.x/2.x, SDXL, SD3, Flux, Flux 2)"


def randomised(model, seed=1):
    """No unit gains, zero shifts or identity latent statistics to hide a mistake."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=gen))
            elif name.endswith("bias"):
                param.copy_(0.05 * torch.randn(param.shape, generator=gen))
        if hasattr(model, "bn"):
            model.bn.running_mean.copy_(0.5 * torch.randn(model.bn.running_mean.shape, generator=gen))
            model.bn.running_var.uniform_(0.01, 2.0, generator=gen)  # small ones make eps matter
    return model.eval().requires_grad_(False)


def diffusers_kl(config, seed=0):
    from diffusers import AutoencoderKL, AutoencoderKLFlux2

    torch.manual_seed(seed)
    cls = AutoencoderKLFlux2 if "decoder_block_out_channels" in config else AutoencoderKL
    return randomised(cls(**config), seed + 1)


def diffusers_tiny(latent_channels, seed=0):
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    return randomised(AutoencoderTiny(latent_channels=latent_channels, **TINY), seed + 1)


def image_to_original(sd):
    """The original layout, written from the LDM module names (``down.i.block.j``, ``up`` numbered from the
    finest, ``mid.attn_1.q`` as 1x1 convs); diffusers' own single-file converter must map it back (checked)."""
    levels = 1 + max(int(k.split(".")[2]) for k in sd if k.startswith("decoder.up_blocks."))
    out = {}
    for key, value in sd.items():
        for old, new in [("conv_shortcut", "nin_shortcut"), ("conv_norm_out", "norm_out"),
                         ("mid_block.resnets.0", "mid.block_1"), ("mid_block.resnets.1", "mid.block_2"),
                         ("mid_block.attentions.0.group_norm", "mid.attn_1.norm"), ("to_out.0", "proj_out"),
                         ("mid_block.attentions.0.to_", "mid.attn_1."), ("mid_block.attentions.0.", "mid.attn_1."),
                         ("downsamplers.0", "downsample"),
                         ("upsamplers.0", "upsample"), ("resnets.", "block."), ("down_blocks.", "down.")]:
            key = key.replace(old, new)
        if key.startswith("decoder.up_blocks."):
            _, _, index, rest = key.split(".", 3)
            key = f"decoder.up.{levels - 1 - int(index)}.{rest}"
        if ".mid.attn_1." in key and key.endswith("weight") and value.ndim == 2:
            value = value[:, :, None, None]
        out[key] = value
    return out


def to_host_tiny(sd, scale, shift):
    """The host's combined TAESD (its Load VAE's ``taesd_encoder.`` / ``taesd_decoder.`` prefixes on madebyollin's
    files, whose decoder counts a clamp as layer 0) with the scale and shift it adds for a diffusion model."""
    out = {"vae_scale": torch.tensor(scale), "vae_shift": torch.tensor(shift)}
    for key, value in sd.items():
        part, _, index, rest = key.split(".", 3)
        out[f"taesd_{part}.{int(index) + (part == 'decoder')}.{rest}"] = value
    return out


# --- Kandinsky 6 video ------------------------------------------------------------------------------------

KANDINSKY_SMALL = dict(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1)  # 32 groups, as the release


def diffusers_kandinsky(seed=0, **config):
    from diffusers import AutoencoderKLKVAEVideo

    torch.manual_seed(seed)
    return randomised(AutoencoderKLKVAEVideo(**(config or KANDINSKY_SMALL)), seed + 1)


# --- MiniMax H3 video -----------------------------------------------------------------------------------

# six levels and the release's strides, 32 groups, 64-wide heads as released; two decoder blocks
MINIMAX_SMALL = dict(block_out_channels=(32, 32, 64, 64, 64, 64), layers_per_block=1, decoder_num_layers=2,
                     decoder_num_attention_heads=2, decoder_attention_head_dim=64)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def diffusers_minimax(seed=0, tile_px=None, **config):
    """diffusers' AutoencoderKLMiniMaxH3 with random weights: its zero-initialised residual scales and register
    tokens drawn too, or the decoder's blocks would do nothing. ``tile_px``: its tiles (a quarter overlap)."""
    from diffusers import AutoencoderKLMiniMaxH3

    torch.manual_seed(seed)
    model = randomised(AutoencoderKLMiniMaxH3(**(config or MINIMAX_SMALL)), seed + 1)
    gen = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("scale1", "scale2", "register_tokens")):
                param.copy_(0.5 * torch.randn(param.shape, generator=gen))
    if tile_px is not None:
        model.enable_tiling(tile_px, tile_px, tile_px // 4, tile_px // 4)
    return model


def imagenet_to_unit(x: torch.Tensor) -> torch.Tensor:
    """MiniMax H3's pixels (ImageNet-normalised, channels at dim 1) -> [0, 1], unclamped."""
    mean, std = (torch.tensor(v).view(-1, 1, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return x * std + mean


def unit_to_imagenet(x: torch.Tensor) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(-1, 1, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD))
    return (x - mean) / std


def minimax_int8_file(release_sd, group=64, skip=()):
    """The host's int8 + ConvRot decoder file of a MiniMax H3 state dict in the release's layout: every decoder
    block projection (but ``skip``) rotated by groups, quantised per output row, marked with its JSON."""
    import json

    from framestream.vae_core.models.minimax.quantized import QUANTISABLE, hadamard, per_row_int8

    marker = torch.tensor(list(json.dumps({"format": "int8_tensorwise", "convrot": True,
                                           "convrot_groupsize": group}).encode()), dtype=torch.uint8)
    out = dict(release_sd)
    for key, weight in release_sd.items():
        layer = key[: -len(".weight")]
        if key.endswith(".weight") and QUANTISABLE.match(layer) and layer not in skip:
            n, k = weight.shape
            rotated = (weight.float().reshape(n, k // group, group) @ hadamard(group, torch.float32, weight.device).T)
            out[key], out[layer + ".weight_scale"] = per_row_int8(rotated.reshape(n, k))
            out[layer + ".comfy_quant"] = marker
    return out


# --- SeedVR2 ---------------------------------------------------------------------------------------------------

SEEDVR2_SMALL = (32, 64, 96, 96)  # the release's key set (shortcuts where its widths change) at 9.7 M parameters


def seedvr2_weights(widths=SEEDVR2_SMALL, seed=0) -> dict[str, torch.Tensor]:
    """Random tensors in the release's (and the host's) layout: weights scaled by their fan-in so activations
    stay in range through the unnormalised residual paths, norm gains near one, small biases."""
    from framestream.vae_core.models.seedvr2.model import SeedVR2Config, SeedVR2VAE

    with torch.device("meta"):
        shapes = {k: v.shape for k, v in SeedVR2VAE(SeedVR2Config(widths=tuple(widths))).state_dict().items()}
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in shapes.items():
        if len(shape) > 1:
            out[key] = torch.randn(shape, generator=gen) / math.prod(shape[1:]) ** 0.5
        elif "norm" in key and key.endswith("weight"):
            out[key] = 1.0 + 0.1 * torch.randn(shape, generator=gen)
        else:
            out[key] = 0.1 * torch.randn(shape, generator=gen)
    return out


def seedvr2_host_module(seedvr, sd: dict[str, torch.Tensor], widths=SEEDVR2_SMALL):
    """The host's own ``VideoAutoencoderKLWrapper`` (``seedvr``: its ``comfy.ldm.seedvr.vae``) at ``widths``, holding
    copies of ``sd``. The host reads its widths from a module constant when it builds the wrapper, so the constant
    is set while it is built; the weights load strictly, so the key set is the host's own."""
    release = seedvr.BYTEDANCE_BLOCK_OUT_CHANNELS
    seedvr.BYTEDANCE_BLOCK_OUT_CHANNELS = tuple(widths)
    try:
        module = seedvr.VideoAutoencoderKLWrapper()
    finally:
        seedvr.BYTEDANCE_BLOCK_OUT_CHANNELS = release
    module.load_state_dict({k: v.clone() for k, v in sd.items()}, strict=True)
    return module.eval().requires_grad_(False)


# --- every family ---------------------------------------------------------------------------------------------


def every_family_fixture():
    """(what it is, its tensors, the family that must claim it) for each registered family and layout."""
    from framestream.vae_core import build_wan

    wan21, wan22 = diffusers_wan(WAN21_SMALL).state_dict(), diffusers_wan(WAN22_SMALL, seed=1).state_dict()
    hunyuan, ltx = diffusers_hunyuan().state_dict(), diffusers_ltx(LTX_SMALL).state_dict()
    sd, sd3, flux2 = (diffusers_kl(c).state_dict() for c in (SD, SD3, FLUX2))
    tiny = diffusers_tiny(4).state_dict()
    host_tiny = to_host_tiny(tiny, 0.18215, 0.0)
    return [
        ("Wan 2.1 diffusers", wan21, "Wan 2.1 / 2.2 VAE"), ("Wan 2.1 original", build_wan(wan21).state_dict(), "Wan 2.1 / 2.2 VAE"),
        ("Wan 2.2 diffusers", wan22, "Wan 2.1 / 2.2 VAE"),
        ("HunyuanVideo diffusers", hunyuan, "HunyuanVideo VAE"),
        ("HunyuanVideo host", to_host_layout(hunyuan), "HunyuanVideo VAE"),
        ("CogVideoX diffusers", diffusers_cogvideox().state_dict(), "CogVideoX VAE"),
        ("CogVideoX original", cogvideox_to_original(diffusers_cogvideox().state_dict()), "CogVideoX VAE"),
        ("Kandinsky 6 release", diffusers_kandinsky().state_dict(), "Kandinsky 6 video VAE"),
        ("MiniMax H3 diffusers", diffusers_minimax().state_dict(), "MiniMax H3 video VAE"),
        ("SeedVR2 release", seedvr2_weights(), "SeedVR2 VAE"),
        ("LTX-Video diffusers", ltx, "LTX-Video VAE"),
        ("LTX-Video original", ltx_to_original(ltx, "0.9.0"), "LTX-Video VAE"),
        ("SD diffusers", sd, IMAGE_VAE), ("SD original", image_to_original(sd), IMAGE_VAE),
        ("SD3 original", image_to_original(sd3), IMAGE_VAE), ("Flux 2 diffusers", flux2, IMAGE_VAE),
        ("TAESD diffusers", tiny, "tiny autoencoder (TAESD)"), ("TAESD host", host_tiny, "tiny autoencoder (TAESD)"),
        ("TAESD decoder file", {k[14:]: v for k, v in host_tiny.items() if k.startswith("taesd_decoder.")},
         "tiny autoencoder (TAESD)"),
        ("TAESD encoder file", {k[14:]: v for k, v in host_tiny.items() if k.startswith("taesd_encoder.")},
         "tiny autoencoder (TAESD)"),
    ]


# --- TAEHV ----------------------------------------------------------------------------------------------------

NARROW = (32, 16, 8, 8)


@functools.cache
def _variants() -> dict[str, TinyVideoConfig]:
    """The released variants' structures (as the reference chooses them by file name), at reduced decoder width."""
    from framestream.vae_core.models.taehv.model import TinyVideoConfig

    return {
        "taehv": TinyVideoConfig(16, 1, (2, 2, 1), (1, 2, 2), NARROW),
        "taew2_2": TinyVideoConfig(48, 2, (2, 2, 1), (1, 2, 2), NARROW),
        "taeltx_2": TinyVideoConfig(128, 4, (2, 2, 2), (2, 2, 2), NARROW),
        "taew2_2_super": TinyVideoConfig(48, 2, (2, 2, 1), (1, 2, 2), NARROW, super=True),
    }


def __getattr__(name: str):
    """``VARIANTS`` (name -> TinyVideoConfig), built on first use, as FrameStream may not be loaded yet."""
    if name == "VARIANTS":
        return _variants()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def random_tensors(cfg: TinyVideoConfig, seed: int = 0, drop: str | None = None) -> dict[str, torch.Tensor]:
    """Weights of unit gain per layer (so activations neither vanish nor saturate), optionally without a half."""
    from framestream.vae_core.models.taehv.checkpoints import tensor_shapes

    gen = torch.Generator().manual_seed(seed)
    return {key: torch.randn(shape, generator=gen) / max(1, torch.Size(shape[1:]).numel()) ** 0.5
            for key, shape in tensor_shapes(cfg).items() if drop is None or not key.startswith(drop)}


def tae(name: str, cfg: TinyVideoConfig | None = None, seed: int = 0, sampled: bool = True):
    """A random-weight TAE under a release's file name, taking latents as sampled (``sampled``) or raw."""
    from framestream.vae_core import build_vae

    vae = build_vae(random_tensors(cfg or _variants()[name], seed), f"{name}.safetensors")
    return vae.configure(normalized_latents=sampled)


# --- Stable Video Diffusion ---------------------------------------------------------------------------------

SVD_SMALL = dict(block_out_channels=(32, 32, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4, layers_per_block=2)


def diffusers_svd(seed=0, **config):
    """diffusers' initialisation, with random norm gains and biases and mix factors, so that no norm is the
    identity and no block mixes its spatial and temporal branches half and half."""
    from diffusers import AutoencoderKLTemporalDecoder

    torch.manual_seed(seed)
    model = AutoencoderKLTemporalDecoder(**{**SVD_SMALL, **config}).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("mix_factor"):
                param.copy_(torch.randn(param.shape, generator=gen))
            elif "norm" in name:
                param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.3 * torch.randn(param.shape, generator=gen))
    return model


# --- LTX-2 diffusion decoder (the host's LTX 2.4) --------------------------------------------------------------

# 128 latent channels (the host's statistics are that wide), 16-wide heads, the release's depths cut down;
# temporal kernels of 3 as released, spatial ones small enough for grids of a few latent pixels (diffusers refuses
# a kernel larger than its grid; the host clamps it), the release's 11^3 diffusion-stage box
LTX24_SMALL = dict(out_channels=3, latent_channels=128, patch_size=4, decoder_head_dim=16,
                   decoder_stage_channels=(128, 64, 32, 32, 16), decoder_stage_depths=(2, 2, 1, 1, 2),
                   decoder_stage_kernels=((3, 1, 1), (3, 3, 3), (3, 3, 3), (3, 5, 5)),
                   decoder_upsample_strides=((1, 2, 2), (2, 1, 1), (2, 2, 2), (2, 2, 2)),
                   decoder_upsample_channel_reductions=(2, 2, 1, 2), decoder_stage5_kernel=(11, 11, 11),
                   decoder_t_emb_dim=32)


def diffusers_ltx24(seed=0, **config):
    """diffusers' LTX2VideoDiffusionDecoderModel with random weights: norms near 1, the AdaLN table and the
    biases drawn too (zero-initialised, they would leave the modulation and the context's projection idle)."""
    from diffusers import LTX2VideoDiffusionDecoderModel

    torch.manual_seed(seed)
    model = LTX2VideoDiffusionDecoderModel(**{**LTX24_SMALL, **config}).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        randomise_ltx24(model, gen)
        model.latents_mean.copy_(0.3 * torch.randn(model.latents_mean.shape, generator=gen))
        model.latents_std.copy_(0.5 + torch.rand(model.latents_std.shape, generator=gen))
    return model


def randomise_ltx24(model, gen: torch.Generator) -> None:
    """Every parameter of a diffusion decoder (diffusers' or the host's) drawn: norms near 1, the AdaLN table and
    the biases small, weights scaled by their fan-in."""
    for name, param in model.named_parameters():
        if param.ndim == 1 and "norm" in name:
            param.copy_(1.0 + 0.2 * torch.randn(param.shape, generator=gen))
        elif param.ndim == 1 or "scale_shift_table" in name:
            param.copy_(0.1 * torch.randn(param.shape, generator=gen))
        else:
            param.copy_(torch.randn(param.shape, generator=gen) / param.shape[-1] ** 0.5)


def ltx24_metadata(model) -> dict[str, str]:
    """What the weights do not say (kernels, strides), as a file carries it: diffusers' config in the metadata."""
    import json

    return {"config": json.dumps(dict(model.config))}


def ltx24_host_config(**config) -> dict:
    """:data:`LTX24_SMALL` (``config`` over it) as the host reads it: the ``vae`` part of a file's ``config``
    metadata (ComfyUI's ``CausalDiffusionVAE``, 0.33), with a tiny conv encoder, which the host always builds."""
    c = {**LTX24_SMALL, **config}
    strides, reductions = c["decoder_upsample_strides"], c["decoder_upsample_channel_reductions"]
    return {"_class_name": "CausalDiffusionVAE", "dims": 3, "model_output_type": "x0",
            "encoder": {"dims": 3, "in_channels": 3, "out_channels": c["latent_channels"],
                        "blocks": [["res_x", {"num_layers": 1}]], "patch_size": 4, "latent_log_var": "constant",
                        "norm_layer": "pixel_norm", "base_channels": 8},
            "decoder": {"in_channels": c["latent_channels"], "out_channels": c["out_channels"],
                        "patch_size": c["patch_size"], "head_dim": c["decoder_head_dim"],
                        "stage_channels": list(c["decoder_stage_channels"]),
                        "stage_depths": list(c["decoder_stage_depths"]),
                        "stage_kernels": [list(k) for k in (*c["decoder_stage_kernels"], c["decoder_stage5_kernel"])],
                        "upsamples": [[list(s), r] for s, r in zip(strides, reductions)],
                        "stage5_kernel": list(c["decoder_stage5_kernel"]), "t_emb_dim": c["decoder_t_emb_dim"],
                        "timestep_scale_multiplier": 1000.0, "default_num_inference_steps": 1}}
