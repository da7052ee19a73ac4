"""Mochi VAE checkpoints: diffusers' layout and genmo's (which the host keeps), decoder, encoder or both.

genmo releases the decoder and the encoder as two files with bare keys
(``blocks.2.blocks.3.stack.5.weight``, ``layers.4.layers.1.attn_block.attn.qkv.weight``);
the host prefixes them with ``decoder.`` / ``encoder.`` as it loads them, and a
combined file carries those prefixes. genmo's modules are plain sequences: the
decoder's ``blocks`` are the first mid block (its 1x1x1 input conv first), the
up blocks (``blocks``, ``proj``) and the last mid block; the encoder's ``layers``
are its input projection, the first mid block's resnets, the down blocks
(``layers``, the strided conv first) and the last mid block's resnets. A
resnet is a ``stack`` (norm, SiLU, conv, norm, SiLU, conv) with its attention
as ``attn_block``, whose query, key and value are one ``qkv`` matrix.
:func:`genmo_to_diffusers` renames all that to diffusers' names (the ``qkv``
split into views, no copy), so one model class serves every layout.

Widths and depths are read from the shapes. What the shapes cannot say is
assumed as every release has it: 32 groups per norm, 2x2 spatial unfolding in
the decoder's levels, Fourier features at octaves 6 and 7.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ..assembly import assemble, count_indices
from ...errors import FrameStreamError
from .model import FOURIER_OCTAVES, GROUPS, DecoderConfig, EncoderConfig, MochiConfig, MochiVAE

# the keys the host itself recognises a Mochi VAE by (comfy/sd.py)
HOST_MARKERS = ("blocks.2.blocks.3.stack.5.weight", "decoder.blocks.2.blocks.3.stack.5.weight",
                "layers.4.layers.1.attn_block.attn.qkv.weight", "encoder.layers.4.layers.1.attn_block.attn.qkv.weight")
_GENMO_DECODER = re.compile(r"(decoder\.)?blocks\.\d+\.blocks\.\d+\.stack\.\d+\.weight$")
_GENMO_ENCODER = re.compile(r"(encoder\.)?layers\.\d+\.layers\.\d+\.(stack|attn_block)\.")
_STACK = {"0": "norm1.norm_layer", "2": "conv1.conv", "3": "norm2.norm_layer", "5": "conv2.conv"}
RELEASE = ((1, 2, 3), (2, 2, 2))  # each level's temporal and spatial factor, finest first: 6x8x8
SPACE = 2  # the decoder's spatial unfolding per level (its weights give only time x space^2)


def is_diffusers_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """Mid blocks named ``block_in`` / ``block_out``: no other diffusers VAE names its stages so."""
    return any(k.startswith(("decoder.block_in.resnets.", "encoder.block_in.resnets.")) for k in sd)


def is_genmo_layout(sd: Mapping[str, torch.Tensor]) -> bool:
    """The host's own marker keys, or resnets as ``stack`` sequences inside genmo's nested blocks (reduced
    models too)."""
    return any(k in sd for k in HOST_MARKERS) or any(_GENMO_DECODER.match(k) or _GENMO_ENCODER.match(k) for k in sd)


def recognises(sd: Mapping[str, torch.Tensor]) -> bool:
    return is_diffusers_layout(sd) or is_genmo_layout(sd)


def _with_part_prefixes(sd: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """genmo's bare decoder or encoder file under ``decoder.`` / ``encoder.``, as the host prefixes them."""
    bare_decoder = any(k.startswith("blocks.") for k in sd)
    bare_encoder = any(k.startswith("layers.") for k in sd)
    if bare_decoder and bare_encoder:
        raise FrameStreamError(f"{source} mixes genmo's decoder and encoder keys without their 'decoder.' and "
                               "'encoder.' prefixes, so its output layers cannot be told apart; save them with the "
                               "prefixes, or as two files")
    prefix = "decoder." if bare_decoder else "encoder." if bare_encoder else ""
    return {k if k.startswith(("decoder.", "encoder.")) else prefix + k: v for k, v in sd.items()}


def _resnet_part(rest: str) -> str:
    """``stack.N.x`` -> diffusers' name of that resnet's layer; anything else unchanged."""
    m = re.match(r"stack\.(\d+)\.(.*)", rest)
    if m and m.group(1) in _STACK:
        return f"{_STACK[m.group(1)]}.{m.group(2)}"
    return rest


def _attention(target: str, index: int, rest: str, value: torch.Tensor, out: dict) -> bool:
    """genmo's ``attn_block.*`` of resnet ``index`` as diffusers' ``norms`` / ``attentions`` of ``target``."""
    if rest.startswith("attn_block.norm."):
        out[f"{target}.norms.{index}.norm_layer.{rest[len('attn_block.norm.'):]}"] = value
    elif rest == "attn_block.attn.qkv.weight":
        for name, part in zip(("to_q", "to_k", "to_v"), value.detach().chunk(3, dim=0)):
            out[f"{target}.attentions.{index}.{name}.weight"] = part
    elif rest.startswith("attn_block.attn.out."):
        out[f"{target}.attentions.{index}.to_out.0.{rest[len('attn_block.attn.out.'):]}"] = value
    else:
        return False
    return True


def _resnet(target: str, index: int, rest: str, value: torch.Tensor, out: dict) -> None:
    if not _attention(target, index, rest, value, out):
        out[f"{target}.resnets.{index}.{_resnet_part(rest)}"] = value


def _decoder_key(key: str, value: torch.Tensor, last: int, out: dict) -> None:
    m = re.match(r"decoder\.blocks\.(\d+)\.(.*)", key)
    if key.startswith("decoder.output_proj."):
        out["decoder.proj_out." + key[len("decoder.output_proj."):]] = value
    elif m is None:
        out[key] = value
    elif m.group(1) == "0":  # the first mid block: its input conv, then resnets
        index, _, rest = m.group(2).partition(".")
        if index == "0":
            out[f"decoder.conv_in.{rest}"] = value
        else:
            _resnet("decoder.block_in", int(index) - 1, rest, value, out)
    elif int(m.group(1)) == last:
        index, _, rest = m.group(2).partition(".")
        _resnet("decoder.block_out", int(index), rest, value, out)
    else:
        block, rest = int(m.group(1)) - 1, m.group(2)
        inner = re.match(r"blocks\.(\d+)\.(.*)", rest)
        if inner:
            _resnet(f"decoder.up_blocks.{block}", int(inner.group(1)), inner.group(2), value, out)
        else:
            out[f"decoder.up_blocks.{block}.{rest}"] = value  # proj


def _encoder_key(key: str, value: torch.Tensor, downs: list[int], out: dict) -> None:
    m = re.match(r"encoder\.layers\.(\d+)\.(.*)", key)
    if key.startswith("encoder.output_norm."):
        out["encoder.norm_out.norm_layer." + key[len("encoder.output_norm."):]] = value
    elif key.startswith("encoder.output_proj."):
        out["encoder.proj_out." + key[len("encoder.output_proj."):]] = value
    elif m is None:
        out[key] = value
    elif m.group(1) == "0":
        out[f"encoder.proj_in.{m.group(2)}"] = value
    elif int(m.group(1)) in downs:
        block, rest = downs.index(int(m.group(1))), m.group(2)
        inner = re.match(r"layers\.(\d+)\.(.*)", rest)
        if inner is None:
            out[key] = value  # not genmo's: left for the model to refuse
        elif inner.group(1) == "0":
            out[f"encoder.down_blocks.{block}.conv_in.conv.{inner.group(2)}"] = value
        else:
            _resnet(f"encoder.down_blocks.{block}", int(inner.group(1)) - 1, inner.group(2), value, out)
    else:
        index, rest = int(m.group(1)), m.group(2)
        before = not downs or index < downs[0]
        target = "encoder.block_in" if before else "encoder.block_out"
        _resnet(target, index - 1 if before else index - downs[-1] - 1, rest, value, out)


def genmo_to_diffusers(sd: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Renames genmo's (the host's) keys to diffusers'; keys already in diffusers' layout pass through."""
    sd = _with_part_prefixes(sd, source)
    last = count_indices(sd, r"decoder\.blocks\.(\d+)\.") - 1
    downs = sorted({int(m.group(1)) for k in sd for m in [re.match(r"encoder\.layers\.(\d+)\.layers\.", k)] if m})
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.startswith("decoder."):
            _decoder_key(key, value, last, out)
        elif key.startswith("encoder."):
            _encoder_key(key, value, downs, out)
        else:
            out[key] = value
    return out


def _resnets(sd: Mapping[str, torch.Tensor], stage: str) -> int:
    return count_indices(sd, re.escape(stage) + r"\.resnets\.(\d+)\.")


def infer_decoder(sd: Mapping[str, torch.Tensor]) -> tuple[DecoderConfig, int]:
    """The decoder's configuration and latent channels, from its shapes."""
    levels = count_indices(sd, r"decoder\.up_blocks\.(\d+)\.")
    finest = sd["decoder.proj_out.weight"]
    widths = [finest.shape[1]] + [sd[f"decoder.up_blocks.{u}.proj.weight"].shape[1] for u in reversed(range(levels))]
    temporal = []
    for u in reversed(range(levels)):  # finest first
        unfold, out = sd[f"decoder.up_blocks.{u}.proj.weight"].shape[0], widths[levels - 1 - u]
        temporal.append(unfold // (out * SPACE**2) if unfold % (out * SPACE**2) == 0 else 0)
    layers = [_resnets(sd, "decoder.block_out")] + [_resnets(sd, f"decoder.up_blocks.{u}")
                                                    for u in reversed(range(levels))]
    layers.append(_resnets(sd, "decoder.block_in"))
    cfg = DecoderConfig(widths=tuple(widths), layers=tuple(layers), temporal=tuple(temporal),
                        spatial=(SPACE,) * levels, out_channels=finest.shape[0])
    return cfg, sd["decoder.conv_in.weight"].shape[1]


def infer_encoder(sd: Mapping[str, torch.Tensor]) -> tuple[EncoderConfig, int]:
    levels = count_indices(sd, r"encoder\.down_blocks\.(\d+)\.")
    convs = [sd[f"encoder.down_blocks.{d}.conv_in.conv.weight"] for d in range(levels)]
    stages = ["encoder.block_in", *(f"encoder.down_blocks.{d}" for d in range(levels)), "encoder.block_out"]
    cfg = EncoderConfig(
        widths=(sd["encoder.proj_in.weight"].shape[0], *(conv.shape[0] for conv in convs)),
        layers=tuple(_resnets(sd, stage) for stage in stages),
        temporal=tuple(conv.shape[2] for conv in convs), spatial=tuple(conv.shape[3] for conv in convs),
        attention=tuple(f"{stage}.attentions.0.to_q.weight" in sd for stage in stages),
        in_channels=sd["encoder.proj_in.weight"].shape[1])
    return cfg, sd["encoder.proj_out.weight"].shape[0] // 2


def _check_release(cfg: MochiConfig, name: str) -> None:
    """One clear message for a Mochi-like file whose structure the model cannot be (or is not Mochi's)."""
    problems = []
    for part in ("decoder", "encoder"):
        sub = getattr(cfg, part)
        if sub is None:
            continue
        if (tuple(sub.temporal), tuple(sub.spatial)) != RELEASE:
            problems.append(f"its {part} has {len(sub.temporal)} levels scaling time by {tuple(sub.temporal)} and "
                            f"space by {tuple(sub.spatial)}; Mochi's have 3, by (1, 2, 3) and (2, 2, 2)")
        odd = [w for w in sub.widths if w % GROUPS]
        if odd:
            problems.append(f"its {part} widths {tuple(sub.widths)} are not all multiples of {GROUPS}")
    if cfg.encoder is not None and cfg.encoder.in_channels != 3 * (1 + 2 * len(FOURIER_OCTAVES)):
        problems.append(f"its encoder takes {cfg.encoder.in_channels} input channels; Mochi's takes 15 (RGB and its "
                        "Fourier features)")
    if problems:
        raise FrameStreamError(f"{name} but its structure matches no release: " + "; ".join(problems))


def build_mochi(sd: Mapping[str, torch.Tensor], source: str = "checkpoint", metadata=None) -> MochiVAE:
    """A :class:`MochiVAE` holding exactly the given tensors (no copy), in either layout, with either part or both."""
    genmo = not is_diffusers_layout(sd)
    name = f"{source} looks like a Mochi VAE ({'genmo layout' if genmo else 'diffusers layout'})"
    sd = genmo_to_diffusers(sd, source) if genmo else dict(sd)
    has_decoder, has_encoder = (any(k.startswith(p) for k in sd) for p in ("decoder.", "encoder."))
    try:
        decoder, decoder_latent = infer_decoder(sd) if has_decoder else (None, None)
        encoder, encoder_latent = infer_encoder(sd) if has_encoder else (None, None)
    except KeyError as err:
        raise FrameStreamError(f"{name} but is incomplete: missing {err}") from None
    if decoder_latent and encoder_latent and decoder_latent != encoder_latent:
        raise FrameStreamError(f"{name} but its decoder takes {decoder_latent} latent channels and its encoder makes "
                               f"{encoder_latent}; they are parts of different models")
    cfg = MochiConfig(latent_channels=decoder_latent or encoder_latent, encoder=encoder, decoder=decoder)
    _check_release(cfg, name)
    return assemble(lambda: MochiVAE(cfg, source), sd, source)
