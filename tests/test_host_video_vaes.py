"""HunyuanVideo and CogVideoX VAEs in a real ComfyUI on CPU (runs only with ``COMFYUI_DIR``, as test_host_comfyui.py).

HunyuanVideo comes through the host's own Load VAE (its Stable Diffusion layout
with 3D convs); CogVideoX, which the host cannot load, through FrameStream Load
VAE. Each decode in the host must equal the library's decode of the same file.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from test_host_comfyui import (COMFYUI_DIR, TOL, assert_success, comfy, probe, run_prompt)  # noqa: F401
from test_hunyuan import to_host_layout

from framestream.vae_core import engine
from framestream.vae_core.checkpoints import load_vae

pytestmark = pytest.mark.skipif(not COMFYUI_DIR, reason="set COMFYUI_DIR to a ComfyUI checkout to run host tests")


def _random(model):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    return model


def _save_latent(base, name: str, latent: torch.Tensor) -> None:
    save_file({"latent_tensor": latent, "latent_format_version_0": torch.tensor([])}, base / "input" / name)


def _decode_prompt(loader: dict, latent_name: str, probe_name: str) -> dict:
    return {
        "1": loader,
        "2": {"class_type": "LoadLatent", "inputs": {"latent": latent_name}},
        "3": {"class_type": "FrameStreamDecode", "inputs": {"vae": ["1", 0], "samples": ["2", 0]}},
        "4": {"class_type": "FrameStreamTestProbeImage", "inputs": {"images": ["3", 0], "name": probe_name}},
    }


def _library_decode(path, latent):
    return engine.decode(load_vae(str(path)), latent)


def test_hunyuan_video_from_the_hosts_load_vae(comfy):  # noqa: F811  (the server fixture imported above)
    """The host's widths are fixed (128-512), so the test VAE is full width; the frames are tiny."""
    from framestream.vae_core.hunyuan import HunyuanVideoVAE

    url, base, _ = comfy
    path = base / "models" / "vae" / "hunyuan_video_vae_test.safetensors"
    save_file({k: v.contiguous() for k, v in to_host_layout(_random(HunyuanVideoVAE()).state_dict()).items()}, path)
    clips = {"one": torch.randn(1, 16, 1, 2, 2), "three": torch.randn(1, 16, 3, 2, 2)}
    for name, latent in clips.items():
        _save_latent(base, f"hunyuan_{name}.latent", latent)
    loader = {"class_type": "VAELoader", "inputs": {"vae_name": path.name}}
    for name, latent in clips.items():
        prompt = _decode_prompt(loader, f"hunyuan_{name}.latent", f"hunyuan_{name}")
        if name == "one":  # one frame: no attention mask or statistics over time to differ in, so the host agrees
            prompt["5"] = {"class_type": "VAEDecode", "inputs": {"vae": ["1", 0], "samples": ["2", 0]}}
            prompt["6"] = {"class_type": "FrameStreamTestProbeImage", "inputs": {"images": ["5", 0],
                                                                                 "name": "host_hunyuan_one"}}
        assert_success(run_prompt(url, prompt))
        got = probe(base, f"hunyuan_{name}")
        assert got.shape == (1 + 4 * (latent.shape[2] - 1), 16, 16, 3)
        assert (got - _library_decode(path, latent)).abs().max().item() <= TOL
    host = probe(base, "host_hunyuan_one").reshape(-1, 16, 16, 3)
    assert (probe(base, "hunyuan_one") - host).abs().max().item() <= TOL


def test_cogvideox_from_framestream_load_vae(comfy):  # noqa: F811
    from framestream.vae_core.cogvideox import CogVideoXConfig, CogVideoXVAE

    url, base, _ = comfy
    path = base / "models" / "vae" / "cogvideox_vae_test.safetensors"
    model = _random(CogVideoXVAE(CogVideoXConfig(widths=(32, 32, 64, 64), layers_per_block=1)))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    latent = torch.randn(1, 16, 3, 2, 2)
    _save_latent(base, "cogvideox.latent", latent)
    loader = {"class_type": "FrameStreamVAELoader", "inputs": {"vae_name": path.name, "precision": "fp32"}}
    assert_success(run_prompt(url, _decode_prompt(loader, "cogvideox.latent", "cogvideox")))
    got = probe(base, "cogvideox")
    assert got.shape == (9, 16, 16, 3)
    assert (got - _library_decode(path, latent)).abs().max().item() <= TOL
