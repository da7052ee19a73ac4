"""Thin ComfyUI adapters: each node adapts the host's types and calls ``vae_core``."""

from . import decode, decode_video, encode, encode_video, frame_conditioning, guider, image_attention, loader, preview  # noqa: F401,E501  (registers the nodes)
from .registry import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
