"""Reading a model's structure off a checkpoint's keys, and putting the model around its own tensors."""

from __future__ import annotations

import re
from typing import Callable, Mapping

import torch

from ..errors import FrameStreamError
from ..streaming.model import CausalVideoVAE


def assemble(make: Callable[[], CausalVideoVAE], sd: Mapping[str, torch.Tensor], source: str) -> CausalVideoVAE:
    """``make()`` built on the meta device, then given exactly these tensors (no copy: ``assign``)."""
    with torch.device("meta"):
        model = make()
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False, assign=True)
    except RuntimeError as err:  # a shape mismatch: the first line that names the tensor
        missing, unexpected = [str(err).splitlines()[1].strip()], []
    if missing or unexpected:
        raise FrameStreamError(f"{source} looks like {article(model.family)} {model.family} but does not match its "
                               f"architecture (missing: {missing[:3]}, unexpected: {unexpected[:3]})")
    return model.eval()


def article(name: str) -> str:
    """"an" before a name read with a vowel sound first (LTX: "el"), else "a"."""
    return "an" if name.startswith(("A", "E", "I", "O", "U", "LTX")) else "a"


def count_indices(sd: Mapping[str, torch.Tensor], pattern: str) -> int:
    """How many numbered entries (``pattern``'s first group) the keys hold: blocks, resnets, stages."""
    found = {int(m.group(1)) for k in sd for m in [re.match(pattern, k)] if m}
    return max(found) + 1 if found else 0
