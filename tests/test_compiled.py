"""Compiled steps (``compile_stages``, the CLI's ``--compile``): the eager frames and latents to float rounding,
the engine's bookkeeping kept out of the graphs, and a clear refusal where the machine cannot compile."""

import copy
import subprocess
import sys

import pytest
import torch

from framestream import cli
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.streaming import engine
from framestream.vae_core.streaming.compiled import compile_seconds, compile_stages
from framestream.vae_core import build_vae

from oracle import diffusers_cogvideox


def _no_compiler(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)


@pytest.mark.slow
def test_a_compiled_decode_and_encode_equal_the_eager_ones(wan21_pair):
    eager = wan21_pair[1]
    compiled = compile_stages(copy.deepcopy(eager))
    z = torch.randn(1, 16, 4, 4, 6, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        frames = engine.decode(eager, z, frames_per_step=2)  # steps of 1 + 2 + 1 latent frames: three shapes
        assert (engine.decode(compiled, z, frames_per_step=2) - frames).abs().max() <= 1e-4
        latent = engine.encode(eager, frames)
        assert (engine.encode(compiled, frames) - latent).abs().max() <= 1e-4
    assert compile_seconds() > 0
    assert compiled.decode_tile is not eager.decode_tile and "decode_tile" not in vars(eager)  # the copy only


@pytest.mark.slow
def test_compiled_tiles_gather_their_statistics_as_the_eager_ones():
    """CogVideoX normalises each chunk with statistics gathered over all its tiles in a trial run: the pooling
    runs outside the compiled graphs, so the compiled tiles meet exactly where the eager ones do."""
    vae = build_vae(diffusers_cogvideox().state_dict()).requires_grad_(False)
    z = torch.randn(1, 16, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tiled = engine.decode(vae, z, tile=64, overlap=32)
        whole = engine.decode(vae, z, tile=None)
        compile_stages(vae)
        assert (engine.decode(vae, z, tile=64, overlap=32) - tiled).abs().max() <= 1e-4
    assert (tiled - whole).abs().max() > 1e-3  # the tiles are a real test: they differ from one whole frame


def test_compiling_without_a_compiler_is_refused_before_any_work(wan21_pair, monkeypatch):
    _no_compiler(monkeypatch)
    with pytest.raises(FrameStreamError, match="compiling on the CPU needs a C.. compiler"):
        compile_stages(copy.deepcopy(wan21_pair[1]))


def test_the_cli_refuses_compile_without_a_compiler_and_writes_nothing(wan21_pair, tmp_path, capsys, monkeypatch):
    from safetensors.torch import save_file
    save_file({k: v.contiguous() for k, v in wan21_pair[1].state_dict().items()}, tmp_path / "wan.safetensors")
    save_file({"x": torch.randn(16, 2, 2, 2)}, tmp_path / "z.safetensors")
    _no_compiler(monkeypatch)
    output = tmp_path / "out.mp4"
    code = cli.main(["decode", str(tmp_path / "wan.safetensors"), str(tmp_path / "z.safetensors"), "-o", str(output),
                     "--compile"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and "needs a C++ compiler" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wan.safetensors", "z.safetensors"]


def test_the_compiler_is_not_imported_unless_asked_for():
    """Importing torch's compiler takes about a second; ``import framestream`` and an eager decode must not."""
    code = ("import sys, torch, framestream.cli; from framestream.vae_core.streaming import engine\n"
            "from framestream.vae_core.models.registry import build_vae\n"
            "print('torch._dynamo' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_the_cli_decodes_compiled_as_it_does_eagerly_and_says_what_compiling_took(wan21_pair, tmp_path, capsys):
    from safetensors.torch import load_file, save_file
    save_file({k: v.contiguous() for k, v in wan21_pair[1].state_dict().items()}, tmp_path / "wan.safetensors")
    save_file({"x": torch.randn(16, 3, 2, 3, generator=torch.Generator().manual_seed(1))}, tmp_path / "z.safetensors")
    frames = {}
    for label, extra in (("eager", []), ("compiled", ["--compile"])):
        code = cli.main(["decode", str(tmp_path / "wan.safetensors"), str(tmp_path / "z.safetensors"), "-q",
                         "-o", str(tmp_path / f"{label}.safetensors"), *extra])
        out, err = capsys.readouterr()
        assert code == 0, err
        assert ("s of it compiling" in out) == (label == "compiled"), out
        frames[label] = load_file(tmp_path / f"{label}.safetensors")["frames"]
    assert (frames["compiled"] - frames["eager"]).abs().max() <= 1e-4
