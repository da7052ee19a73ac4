"""FrameStream's core: streaming video VAEs in pure torch (never imports the host)."""

from .errors import FrameStreamError
from .streaming.compiled import compile_stages
from .models.registry import build_vae, load_vae
from .models.wan.checkpoints import build_wan
from .streaming.engine import decode, encode
from .streaming.memory import plan_decode, plan_encode
from .streaming.settings import Settings
from .streaming.sinks import CallbackSink, FrameSink, LatentSink
from .streaming.state import StreamState
from .streaming.stitch import StitchSink
from .streaming.stream import DecodeStream, EncodeStream, Mark

__all__ = ["build_vae", "build_wan", "load_vae", "decode", "encode", "plan_decode", "plan_encode", "Settings",
           "FrameStreamError", "CallbackSink", "FrameSink", "LatentSink", "StitchSink", "StreamState", "DecodeStream",
           "EncodeStream", "Mark", "compile_stages"]
