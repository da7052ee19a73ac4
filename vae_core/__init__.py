"""FrameStream's core: streaming causal video VAEs in pure torch (never imports the host)."""

from .checkpoints import build_vae, build_wan, load_vae
from .engine import decode, encode
from .errors import FrameStreamError
from .sinks import CallbackSink, FrameSink, LatentSink
from .stitch import StitchSink
from .stream import StreamState

__all__ = ["build_vae", "build_wan", "load_vae", "decode", "encode", "FrameStreamError", "CallbackSink", "FrameSink",
           "LatentSink", "StitchSink", "StreamState"]
