"""The latent spaces the tiny video autoencoders were trained in, and the host's raw latents' way into them.

A TAE decodes what the diffusion model samples: the big VAE's latent after
its normalisation (per-channel statistics for Wan, one scale for HunyuanVideo
and CogVideoX; LTX-2's VAE normalises inside itself, so its sampled latent is
its LATENT). The host's LATENTs and FrameStream's files hold the big VAE's raw
latent, so a draft decode first applies ``(z - mean) * scale / std``; a preview
of the sampler's own prediction needs nothing (:data:`SAMPLER`).

The constants are the releases' (the host's ``comfy.latent_formats``, diffusers'
configs). A file is matched to its space by the release's file name; a file
named otherwise decodes latents as given.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LatentSpace:
    name: str
    mean: tuple[float, ...] | None = None  # per channel, or None: 0
    std: tuple[float, ...] | None = None  # per channel, or None: 1
    scale: float = 1.0

    def to_sampler(self, z: torch.Tensor) -> torch.Tensor:
        """A raw latent ``[B, C, T, h, w]`` -> the space the TAE was trained in."""
        if self is SAMPLER:
            return z
        mean, std = self._stats(z)
        return (z - mean) * (self.scale / std)

    def from_sampler(self, z: torch.Tensor) -> torch.Tensor:
        if self is SAMPLER:
            return z
        mean, std = self._stats(z)
        return z * (std / self.scale) + mean

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor | float, torch.Tensor | float]:
        def channels(values, default):
            if values is None:
                return default
            return torch.tensor(values, device=like.device, dtype=like.dtype).view(1, -1, 1, 1, 1)
        return channels(self.mean, 0.0), channels(self.std, 1.0)


SAMPLER = LatentSpace("the sampler's own")

WAN21_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN21_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)
WAN22_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
WAN22_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)

# by the release's file name (the longest matching stem wins: taehv1_5 before taehv)
BY_FILE_NAME = {
    "taew2_1": LatentSpace("Wan 2.1", WAN21_MEAN, WAN21_STD),
    "taew2_2": LatentSpace("Wan 2.2", WAN22_MEAN, WAN22_STD),
    "taehv1_5": LatentSpace("HunyuanVideo 1.5", scale=1.03682),
    "taehv": LatentSpace("HunyuanVideo", scale=0.476986),
    "taecvx": LatentSpace("CogVideoX", scale=1.15258426),
    "taeltx": LatentSpace("LTX-2"),  # its VAE normalises inside: the LATENT is what the sampler sees
    "lighttae": LatentSpace("the big VAE's raw"),  # lightx2v's lighttaew2_1 ... were trained on raw latents
}


def of_file(name: str) -> LatentSpace:
    """The space a released file's name says it was trained in; the sampler's own for any other name."""
    name = name.lower()
    stems = sorted((stem for stem in BY_FILE_NAME if stem in name), key=len, reverse=True)
    return BY_FILE_NAME[stems[0]] if stems else SAMPLER
