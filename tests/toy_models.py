"""Tiny video VAEs whose high-resolution part is pointwise in space, so any tiling is exact.

They keep real causal temporal state at every scale, so a tiled or retried run
that loses, shifts or misplaces a carry gives a different result: the engine's
tiling, carry bookkeeping and OOM recovery are checked to fp32 rounding.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

from framestream.vae_core.streaming.model import CausalVideoVAE
from framestream.vae_core.streaming.traits import NormStatistics, Streaming
from framestream.vae_core.streaming.conv import CausalConv3d


class PointwiseVAE(CausalVideoVAE):
    """Spatial ratio 4 (two 2x stages), temporal ratio 1, causal temporal convs at every scale."""

    family = "pointwise test VAE"
    latent_channels, temporal_ratio, spatial_ratio = 4, 1, 4
    finest_width = encoder_finest_width = 6

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.dec_shared = CausalConv3d(4, 6, (3, 1, 1), padding=(1, 0, 0))
        self.dec_mid = CausalConv3d(6, 6, (3, 1, 1), padding=(1, 0, 0))
        self.dec_out = CausalConv3d(6, 3, (3, 1, 1), padding=(1, 0, 0))
        self.enc_in = CausalConv3d(3, 6, (3, 1, 1), padding=(1, 0, 0))
        self.enc_mid = CausalConv3d(6, 6, (3, 1, 1), padding=(1, 0, 0))
        self.enc_shared = CausalConv3d(6, 4, (3, 1, 1), padding=(1, 0, 0))

    @staticmethod
    def _up(x):
        return x.repeat_interleave(2, dim=3).repeat_interleave(2, dim=4)

    @staticmethod
    def _down(x):
        return F.avg_pool3d(x, (1, 2, 2))

    def decode_shared(self, z):
        return self.dec_shared(z)

    def decode_tile(self, x):
        return torch.tanh(self.dec_out(self._up(self.dec_mid(self._up(x)))))

    def encode_tile(self, x):
        return self._down(self.enc_mid(self._down(self.enc_in(x))))

    def encode_shared(self, x):
        return self.enc_shared(x)


class LookAheadVAE(CausalVideoVAE):
    """A decoder that is NOT causal: two temporal convs centred in time (receptive field 2 latent frames
    each side), then every latent frame becomes 2 pixel frames, the first latent of a clip only one."""

    family = "look-ahead test VAE"
    latent_channels, temporal_ratio, spatial_ratio = 4, 2, 1
    finest_width = encoder_finest_width = 3
    def __init__(self, core: int, halo: int, blend: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.streaming = Streaming("windows", core=core, halo=halo, blend=blend)
        self.a = nn.Conv3d(4, 6, (3, 1, 1), padding=(1, 0, 0))
        self.b = nn.Conv3d(6, 3, (3, 1, 1), padding=(1, 0, 0))

    def decode_shared(self, z):
        return z

    def decode_tile(self, z):
        x = torch.tanh(self.b(torch.tanh(self.a(z))))
        return x.repeat_interleave(2, dim=2)[:, :, 1:]


class LookAheadNormVAE(LookAheadVAE):
    """:class:`LookAheadVAE` with a GroupNorm over the whole clip between its convs: windows with exact halos
    reproduce the whole clip only if that norm sees the clip's statistics, each frame counted once."""

    family = "look-ahead GroupNorm test VAE"
    norms = NormStatistics("clip")

    def __init__(self, core: int, halo: int, seed: int = 0) -> None:
        super().__init__(core, halo, 0, seed)
        from framestream.vae_core.streaming.group_norm import GroupNorm

        self.norm = GroupNorm(2, 6)

    def decode_tile(self, z):
        x = torch.tanh(self.b(self.norm(self.a(z))))
        return x.repeat_interleave(2, dim=2)[:, :, 1:]


class PointwiseFramesVAE(PointwiseVAE):
    """:class:`PointwiseVAE` taking the host's image-latent batch ``[N, C, h, w]`` (one latent per frame)."""

    family = "pointwise per-frame test VAE"
    latent_layout = "frames"


class PointwiseChunkNormVAE(PointwiseVAE):
    """:class:`PointwiseVAE` with GroupNorms over each step's frames and the whole frame in its tiles, one after
    another with a nonlinearity between: tiles are exact only if each norm is given the statistics of inputs
    that were themselves normalised exactly."""

    family = "pointwise chunk-GroupNorm test VAE"
    norms = NormStatistics("chunk")

    def __init__(self, seed: int = 0) -> None:
        super().__init__(seed)
        from framestream.vae_core.streaming.group_norm import GroupNorm

        self.dec_norms = nn.ModuleList(GroupNorm(2, 6) for _ in range(3))
        self.enc_norms = nn.ModuleList(GroupNorm(2, 6) for _ in range(2))

    def decode_tile(self, x):
        x = torch.tanh(self.dec_norms[0](self._up(x)))
        x = self.dec_norms[1](torch.tanh(self.dec_mid(x)) * 3 + 1)
        return torch.tanh(self.dec_out(self.dec_norms[2](self._up(x).square())))

    def encode_tile(self, x):
        x = self.enc_norms[0](self._down(torch.tanh(self.enc_in(x)).square()))
        return self._down(self.enc_norms[1](self.enc_mid(x)))
