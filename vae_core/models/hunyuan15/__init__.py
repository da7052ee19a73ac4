"""HunyuanVideo 1.5: causal convs, RMS norms per position, DCAE resamplers, causal attention over frames."""

from ..family import Family
from . import checkpoints

FAMILY = Family("HunyuanVideo 1.5 VAE", checkpoints.recognises, checkpoints.build, host_only=checkpoints.host_only)
