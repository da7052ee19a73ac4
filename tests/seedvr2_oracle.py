"""A whole-clip SeedVR2 VAE, written as plain functions over a state dict in the host's layout from
docs/research/seedvr2_vae.md: the streaming engine is checked against it always, and the host's own module
(tests/test_host_seedvr2.py, with ``COMFYUI_DIR``) against FrameStream; this reference matched that module to
6e-6 (docs/research/seedvr2_scripts/checks.py). Four blocks as released; which resamplers work in time is read
from the weights' shapes. ``z`` is the host's LATENT (the mean times 0.9152); pixels are in [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F

SCALING, GROUPS, EPS = 0.9152, 32, 1e-6


def _conv(sd, name, x, stride=(1, 1, 1), spatial_padding=None):
    """Causal in time: the clip's first frame repeated ``k - 1`` times in front; zeros around the frame."""
    weight, bias = sd[name + ".weight"], sd[name + ".bias"]
    k = weight.shape[2]
    if k > 1:
        x = torch.cat([x[:, :, :1]] * (k - 1) + [x], dim=2)
    pad = weight.shape[3] // 2 if spatial_padding is None else spatial_padding
    return F.conv3d(x, weight, bias, stride=stride, padding=(0, pad, pad))


def _norm(sd, name, x):
    """GroupNorm of each frame of each video alone."""
    b, c, t, h, w = x.shape
    y = F.group_norm(x.transpose(1, 2).reshape(b * t, c, h, w), GROUPS, sd[name + ".weight"], sd[name + ".bias"], EPS)
    return y.reshape(b, t, c, h, w).transpose(1, 2)


def _resnet(sd, name, x):
    h = _conv(sd, name + ".conv1", F.silu(_norm(sd, name + ".norm1", x)))
    h = _conv(sd, name + ".conv2", F.silu(_norm(sd, name + ".norm2", h)))
    if name + ".conv_shortcut.weight" in sd:
        x = F.conv3d(x, sd[name + ".conv_shortcut.weight"], sd[name + ".conv_shortcut.bias"])
    return x + h


def _attention(sd, name, x):
    """One head of all channels over each frame's pixels."""
    b, c, t, h, w = x.shape
    tokens = _norm(sd, name + ".group_norm", x).transpose(1, 2).reshape(b * t, c, h * w).transpose(1, 2)
    q, k, v = (F.linear(tokens, sd[f"{name}.to_{p}.weight"], sd[f"{name}.to_{p}.bias"])[:, None] for p in "qkv")
    out = F.linear(F.scaled_dot_product_attention(q, k, v)[:, 0], sd[name + ".to_out.0.weight"],
                   sd[name + ".to_out.0.bias"])
    return x + out.transpose(1, 2).reshape(b, t, c, h, w).transpose(1, 2)


def _mid(sd, name, x):
    x = _resnet(sd, name + ".resnets.0", x)
    return _resnet(sd, name + ".resnets.1", _attention(sd, name + ".attentions.0", x))


def _upsample(sd, name, x):
    y = F.conv3d(x, sd[name + ".upscale_conv.weight"], sd[name + ".upscale_conv.bias"])
    b, channels, f, h, w = y.shape
    time = channels // (4 * sd[name + ".conv.weight"].shape[0])
    c = channels // (4 * time)
    y = y.view(b, 2, 2, time, c, f, h, w).permute(0, 4, 5, 3, 6, 1, 7, 2).reshape(b, c, f * time, 2 * h, 2 * w)
    if time == 2:  # the clip's first latent frame stands for one frame
        y = torch.cat([y[:, :, :1], y[:, :, 2:]], dim=2)
    return _conv(sd, name + ".conv", y)


def decode(sd, z):
    x = _mid(sd, "decoder.mid_block", _conv(sd, "decoder.conv_in", z / SCALING))
    for i in range(4):
        for j in range(3):
            x = _resnet(sd, f"decoder.up_blocks.{i}.resnets.{j}", x)
        if i < 3:
            x = _upsample(sd, f"decoder.up_blocks.{i}.upsamplers.0", x)
    return _conv(sd, "decoder.conv_out", F.silu(_norm(sd, "decoder.conv_norm_out", x)))


def encode(sd, x):
    """The posterior's mode, scaled."""
    h = _conv(sd, "encoder.conv_in", x)
    for i in range(4):
        for j in range(2):
            h = _resnet(sd, f"encoder.down_blocks.{i}.resnets.{j}", h)
        if i < 3:
            name = f"encoder.down_blocks.{i}.downsamplers.0.conv"
            stride = (2 if sd[name + ".weight"].shape[2] > 1 else 1, 2, 2)
            h = _conv(sd, name, F.pad(h, (0, 1, 0, 1)), stride, spatial_padding=0)
    h = _mid(sd, "encoder.mid_block", h)
    h = _conv(sd, "encoder.conv_out", F.silu(_norm(sd, "encoder.conv_norm_out", h)))
    return h[:, : h.shape[1] // 2] * SCALING
