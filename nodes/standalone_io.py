"""The part of the host's V3 node API (``comfy_api.latest.io``) FrameStream's nodes use, for running them outside
ComfyUI (tests, the library): the same names and fields, no host behind them.

Inside ComfyUI, :mod:`.host` hands out the host's own ``io`` instead; this module is never imported there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class UploadType(str, Enum):
    video = "video_upload"


class Input:
    """One input socket or widget: its id (the name workflows store), options as the host's inputs take them."""

    io_type = "*"

    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 default: Any = None, options: list | None = None, upload: UploadType | None = None,
                 min: float | None = None, max: float | None = None, step: float | None = None,
                 round: float | None = None) -> None:
        self.id, self.display_name, self.optional, self.tooltip = id, display_name, optional, tooltip
        self.default, self.options, self.upload = default, options, upload
        self.min, self.max, self.step, self.round = min, max, step, round

    def get_io_type(self) -> str:
        return self.io_type


class Output:
    io_type = "*"

    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None) -> None:
        self.id, self.display_name, self.tooltip = id, display_name, tooltip


def _comfy_type(name: str, io_type: str) -> type:
    return type(name, (), {"io_type": io_type,
                           "Input": type("Input", (Input,), {"io_type": io_type}),
                           "Output": type("Output", (Output,), {"io_type": io_type})})


Boolean = _comfy_type("Boolean", "BOOLEAN")
Int = _comfy_type("Int", "INT")
Float = _comfy_type("Float", "FLOAT")
String = _comfy_type("String", "STRING")
Combo = _comfy_type("Combo", "COMBO")
Image = _comfy_type("Image", "IMAGE")
Latent = _comfy_type("Latent", "LATENT")
Conditioning = _comfy_type("Conditioning", "CONDITIONING")
Guider = _comfy_type("Guider", "GUIDER")
Vae = _comfy_type("Vae", "VAE")
Model = _comfy_type("Model", "MODEL")
ClipVisionOutput = _comfy_type("ClipVisionOutput", "CLIP_VISION_OUTPUT")
Audio = _comfy_type("Audio", "AUDIO")
Video = _comfy_type("Video", "VIDEO")


@dataclass
class Schema:
    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list[Input] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    description: str = ""
    is_output_node: bool = False


class NodeOutput:
    """A node's results (unpack it like a tuple) and what it shows in the UI."""

    def __init__(self, *args: Any, ui: dict | None = None) -> None:
        self.args, self.ui = args, ui

    @property
    def result(self):
        return self.args if self.args else None

    def __getitem__(self, index):
        return self.args[index]


class ComfyNode:
    """Nodes are classes: ``define_schema()`` says what they take and give, ``execute(**inputs)`` runs them."""

    hidden = None  # the host's hidden inputs (prompt, extra_pnginfo ...) during a run; none standalone

    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs) -> NodeOutput:
        raise NotImplementedError


class ComfyExtension:
    async def get_node_list(self) -> list[type[ComfyNode]]:
        raise NotImplementedError
