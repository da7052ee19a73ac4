"""What a VAE family tells the registry: how to recognise its checkpoints and how to build its model.

A family is one folder under ``models/`` (its layers and its checkpoint reader)
that exposes one :class:`Family`; ``registry.FAMILIES`` lists them. Nothing
outside the folder names the family's classes: conventions that differ between
families (the host's latent space, decode options, settings a host module holds
beyond its weights) are methods of the model (:class:`streaming.model.CausalVideoVAE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import torch

from ..streaming.model import CausalVideoVAE

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Family:
    name: str  # what users read in messages: "Wan 2.1 / 2.2 VAE"
    # True only for checkpoints of this family, in any layout it reads (keys and shapes; never the file name)
    recognises: Callable[[StateDict], bool]
    # the model holding exactly these tensors (no copy); metadata is the file's safetensors header, or None
    build: Callable[[StateDict, str, Mapping[str, str] | None], CausalVideoVAE]
    # the family this one is a later release of, sharing its key names (LTX-2 of LTX-Video): where both
    # recognise a file, this one knows it better, so neither family's reader needs to know the other
    succeeds: str | None = None
    # True for the keys of layers the host's own module builds but never runs and no file holds (HunyuanVideo
    # 1.5's mid-block ``temb_proj`` since ComfyUI 0.4.0): dropped when a model is rebuilt from a host module only
    host_only: Callable[[str], bool] | None = None


@dataclass(frozen=True)
class Lookalike:
    """A model FrameStream can name but not run, so that an unsupported file is called what it resembles."""

    name: str
    recognises: Callable[[StateDict], bool]
