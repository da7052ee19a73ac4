"""Compiling a model's per-step work with ``torch.compile``, the stream's bookkeeping left outside.

What a compiler can speed up in a streamed step is the elementwise work between the convolutions (a norm, its
activation, a residual add: a handful of passes over memory that it fuses into one). The convolutions already
run in oneDNN or cuDNN, and the engine's bookkeeping (carries read and written, statistics pooled over tiles,
frames held back) is Python that changes from step to step: traced, it would be frozen into guards and
recompiled at every step. So the engine's stateful calls are marked :func:`eager_only`: inside a compiled stage
each becomes a graph break and runs as it always does, and the compiled graphs hold only the pure tensor work
between them. The results equal the eager decode to float rounding (a fused sum adds in another order).

Compilation is lazy: each piece compiles on its first call, so the first steps of the first stream pay for it
(10-70 s on a 2-core CPU); :func:`compile_seconds` says how long. Measured on the CPU it rarely pays
(docs/benchmarks.md, "Compiling the steps"), so nothing compiles unless asked.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import sys
from typing import Callable, TypeVar

import torch

from ..errors import FrameStreamError

STAGES = ("decode_shared", "decode_tile", "encode_tile", "encode_shared")
# even with symbolic sizes, a piece compiles again for each memory layout and size-1 dimension it meets; torch's
# default limit (8 per function) would send a deep model's later calls back to eager without a word
RECOMPILE_LIMIT = 64

Function = TypeVar("Function", bound=Callable)
_EAGER: dict[Callable, Callable] = {}  # an eager_only function -> its compiler-disabled twin, once compiling


def eager_only(function: Function) -> Function:
    """Marks a stateful engine call to run eagerly inside a compiled stage (a graph break), at no cost outside.

    ``torch.compiler.disable`` would do it directly, but importing the compiler takes a second, which every
    ``import framestream`` would pay; the twin is made only when a model is compiled."""
    @functools.wraps(function)
    def call(*args, **kwargs):
        if torch.compiler.is_compiling():
            return _EAGER[function](*args, **kwargs)
        return function(*args, **kwargs)

    _EAGER[function] = function
    return call  # type: ignore[return-value]


def compile_stages(vae: torch.nn.Module, dynamic: bool | None = True) -> torch.nn.Module:
    """``vae`` with its four stages (:attr:`STAGES`) compiled in place, for every later decode and encode.

    ``dynamic`` is ``torch.compile``'s. True (the default) compiles each piece once with its sizes symbolic: a
    stream's steps, tiles and clips come in several sizes, and with None (compile for the first sizes, then
    again symbolic) a later clip recompiled piece after piece (measured: Mochi's encode 3.5x slower than
    eager in its second clip; benchmarks/compile_steps.py)."""
    check_compiler(next(vae.parameters()).device)
    import torch._dynamo  # noqa: F401  (the compiler, imported only when asked for)

    for function in list(_EAGER):
        _EAGER[function] = torch.compiler.disable(function)
    config = torch._dynamo.config
    for limit in ("recompile_limit", "cache_size_limit"):  # the name changed between torch versions
        if hasattr(config, limit):
            setattr(config, limit, max(getattr(config, limit), RECOMPILE_LIMIT))
    for stage in STAGES:
        eager = getattr(type(vae), stage).__get__(vae)
        setattr(vae, stage, torch.compile(eager, dynamic=dynamic))
    return vae


def check_compiler(device: torch.device) -> None:
    """Refuses, before any work, a compile the machine cannot do (inductor would fail at the first step with a
    compiler's traceback): on the CPU it builds C++ with ``$CXX`` or g++ / clang++ (MSVC's cl on Windows), on a
    GPU it writes Triton kernels."""
    if device.type != "cpu":
        if device.type in ("cuda", "xpu") and importlib.util.find_spec("triton") is None:
            raise FrameStreamError(f"compiling for a {device.type.upper()} GPU needs Triton (pip install triton); "
                                   f"it is not installed")
        return
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["cl"] if sys.platform == "win32" else ["g++", "clang++"]
    if not any(shutil.which(name) for name in names):
        raise FrameStreamError(f"compiling on the CPU needs a C++ compiler ({' or '.join(names)}); "
                               f"none was found: install one, or decode without compiling")


def compile_seconds() -> float | None:
    """Seconds this process has spent compiling so far (None where torch does not say)."""
    try:
        from torch._dynamo.utils import compilation_time_metrics
    except ImportError:
        return None
    return sum(compilation_time_metrics.get("_compile.compile_inner", ()))  # the outermost timer: no part twice
