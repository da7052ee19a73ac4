"""FrameStream's core: streaming causal video VAEs in pure torch (never imports the host)."""

from .models.registry import build_vae, load_vae
from .models.wan.checkpoints import build_wan
from .streaming.engine import decode, encode
from .errors import FrameStreamError
from .streaming.sinks import CallbackSink, FrameSink, LatentSink
from .streaming.stitch import StitchSink
from .streaming.state import StreamState

__all__ = ["build_vae", "build_wan", "load_vae", "decode", "encode", "FrameStreamError", "CallbackSink", "FrameSink",
           "LatentSink", "StitchSink", "StreamState"]
