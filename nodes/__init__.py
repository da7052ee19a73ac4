"""Thin ComfyUI adapters (V3 nodes): each node adapts the host's types and calls ``vae_core``."""

from . import decode, decode_video, encode, encode_video, frame_conditioning, guider, image_attention, live_decode, loader, preview  # noqa: F401,E501  (registers the nodes)
from .host import ComfyExtension
from .registry import NODES


class FrameStreamExtension(ComfyExtension):
    async def get_node_list(self) -> list[type]:
        return list(NODES)


__all__ = ["NODES", "FrameStreamExtension"]
