"""HunyuanVideo, CogVideoX, Kandinsky 6, MiniMax H3, SeedVR2 and LTX-Video VAEs and LTX-2's diffusion decoder in a
real ComfyUI on CPU (runs only with ``COMFYUI_DIR``, as test_host_comfyui.py).

Each shipped decode workflow runs on a random-weight VAE the test writes, with
the video written losslessly so its frames can be compared: HunyuanVideo
through the host's own Load VAE (its Stable Diffusion layout with 3D convs),
CogVideoX, Kandinsky 6 and MiniMax H3 (which the host cannot load, or only at the release's size), LTX-Video and
LTX-2's diffusion decoder and SeedVR2 (which the host reads from 0.33 on) through FrameStream Load VAE. LTX-Video
and SeedVR2 (0.33) also come through the host's Load VAE. Every decode must equal the library's decode of the same
file, or the host's own VAE Decode where the two agree.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from helpers import (COMFYUI_DIR, FILE_TOL, TOL, assert_success, host_load_vae_and_decode, host_version,
                     library_decode, needs_host, probe, run_prompt, run_shipped_decode)
from helpers import save_latent_input as _save_latent
from oracle import ltx24_host_config, ltx_to_original, to_host_layout


pytestmark = needs_host


def _random(model):
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    return model


def test_hunyuan_video_workflow_through_the_hosts_load_vae(comfy):
    """The host's widths are fixed (128-512), so the test VAE is full width; the frames are tiny."""
    from framestream.vae_core.models.hunyuan.model import HunyuanVideoVAE

    _, base, _ = comfy
    path = base / "models" / "vae" / "hunyuan_video_vae_test.safetensors"
    save_file({k: v.contiguous() for k, v in to_host_layout(_random(HunyuanVideoVAE()).state_dict()).items()}, path)
    workflow = "hunyuan_video_decode_to_file.json"
    for name, latent in {"one": torch.randn(1, 16, 1, 2, 2), "three": torch.randn(1, 16, 3, 2, 2)}.items():
        _save_latent(base, f"hunyuan_{name}.latent", latent)
        extra = {}
        if name == "one":  # one frame: no attention mask or statistics over time to differ in, so the host agrees
            extra = {"5": {"class_type": "VAEDecode", "inputs": {"vae": ["1", 0], "samples": ["2", 0]}},
                     "6": {"class_type": "FrameStreamTestProbeImage",
                           "inputs": {"images": ["5", 0], "name": "host_hunyuan_one"}}}
        frames, fps = run_shipped_decode(comfy, workflow, path.name, f"hunyuan_{name}.latent", extra)
        assert frames.shape == (1 + 4 * (latent.shape[2] - 1), 16, 16, 3) and fps == 24.0
        assert (frames - library_decode(path, latent)).abs().max().item() <= FILE_TOL
        if name == "one":
            host = probe(base, "host_hunyuan_one").reshape(-1, 16, 16, 3)
            assert (frames - host).abs().max().item() <= FILE_TOL


def _through_framestream_load_vae(comfy, model, name: str, latent: torch.Tensor, frames: int, fps: float,
                                  size: int = 16, workflow: str | None = None, names: dict | None = None,
                                  metadata: dict | None = None, **settings) -> None:
    """The shipped ``<name>_decode_to_file.json`` (or ``workflow``) on ``model`` (random weights, written as
    ``<name>`` files, tensors renamed by ``names``, with the file's ``metadata``): the file's ``size`` px frames
    equal the library's decode of the same VAE file (with the host's ``settings``)."""
    _, base, _ = comfy
    path = base / "models" / "vae" / f"{name}_vae_test.safetensors"
    save_file({(names or {}).get(k, k): v.contiguous() for k, v in _random(model).state_dict().items()}, path,
              metadata=metadata)
    _save_latent(base, f"{name}.latent", latent)
    got, got_fps = run_shipped_decode(comfy, workflow or f"{name}_decode_to_file.json", path.name, f"{name}.latent")
    assert got.shape == (frames, size, size, 3) and got_fps == fps
    assert (got - library_decode(path, latent, **settings)).abs().max().item() <= FILE_TOL


def test_cogvideox_workflow_through_framestream_load_vae(comfy):
    from framestream.vae_core.models.cogvideox.model import CogVideoXConfig, CogVideoXVAE

    model = CogVideoXVAE(CogVideoXConfig(widths=(32, 32, 64, 64), layers_per_block=1))
    _through_framestream_load_vae(comfy, model, "cogvideox", torch.randn(1, 16, 3, 2, 2), 9, 8.0)


def test_kandinsky6_workflow_through_framestream_load_vae(comfy):
    """6 latent frames: the release's chunks of 5 and 1 latent frames, the last one not upsampled in time."""
    from framestream.vae_core.models.kandinsky.model import KandinskyConfig, KandinskyVAE

    model = KandinskyVAE(KandinskyConfig(width=32, multipliers=(1, 2, 2, 2), layers=1))
    _through_framestream_load_vae(comfy, model, "kandinsky6", torch.randn(1, 16, 6, 2, 2), 18, 24.0)


def test_minimax_h3_workflow_through_framestream_load_vae(comfy):
    """One decoder window (7 latent frames, 22 frames) of 2x2 latent pixels, the LATENT normalised as the host's.
    The host's own Load VAE builds only the release's 2.6-billion-parameter model, so its module is compared in
    test_host_minimax.py instead."""
    from framestream.vae_core.models.minimax.model import MiniMaxConfig, MiniMaxH3VAE

    model = MiniMaxH3VAE(MiniMaxConfig(widths=(32, 32, 64, 64, 64, 64), layers=1, decoder_layers=2, heads=2))
    _through_framestream_load_vae(comfy, model, "minimax_h3", torch.randn(1, 24, 7, 2, 2), 22, 24.0, size=32,
                                  normalized_latents=True)


def test_seedvr2_workflow_through_framestream_load_vae(comfy):
    """A reduced SeedVR2 VAE (the release's key set), 3 latent frames of 2x2: 9 frames of 16 px. Its host module
    is compared in test_host_seedvr2.py."""
    from oracle import seedvr2_weights

    _, base, _ = comfy
    path = base / "models" / "vae" / "seedvr2_vae_test.safetensors"
    save_file(seedvr2_weights(), path)
    latent = torch.randn(1, 16, 3, 2, 2, generator=torch.Generator().manual_seed(2))
    _save_latent(base, "seedvr2.latent", latent)
    frames, fps = run_shipped_decode(comfy, "seedvr2_decode_to_file.json", path.name, "seedvr2.latent")
    assert frames.shape == (9, 16, 16, 3) and fps == 24.0
    assert (frames - library_decode(path, latent)).abs().max().item() <= FILE_TOL


@pytest.mark.skipif(bool(COMFYUI_DIR) and host_version() < (0, 33), reason="the host reads SeedVR2 from 0.33 on")
def test_seedvr2_workflow_on_the_hosts_load_vae_equals_its_vae_decode(comfy):
    """The host's Load VAE builds the release's widths whatever the file holds, so the file is full width (250 M
    parameters, float16 as released); FrameStream decodes the module it loaded as its VAE Decode does."""
    from oracle import seedvr2_weights

    _, base, _ = comfy
    path = base / "models" / "vae" / "seedvr2_release_size_test.safetensors"
    save_file({k: v.half() for k, v in seedvr2_weights((128, 256, 512, 512), seed=3).items()}, path)
    latent = torch.randn(1, 16, 3, 2, 2, generator=torch.Generator().manual_seed(4))
    _save_latent(base, "seedvr2_release.latent", latent)
    try:
        frames, fps = run_shipped_decode(comfy, "seedvr2_decode_to_file.json", path.name, "seedvr2_release.latent",
                                         host_load_vae_and_decode(path.name, "host_seedvr2"))
    finally:
        path.unlink()
    host = probe(base, "host_seedvr2").reshape(-1, 16, 16, 3)
    assert frames.shape == host.shape == (9, 16, 16, 3) and fps == 24.0
    assert (frames - host).abs().max().item() <= FILE_TOL
    assert host.std().item() > 0.01


def test_ltx2_diffusion_decoder_workflow_through_framestream_load_vae(comfy):
    """LTX-2's diffusion decoder (the host's LTX 2.4) on a 3-frame LTX-2 latent (17 frames) of 2x2 latent pixels,
    normalised as the host's. Its kernels and upsampling axes are not in the weights: the file carries its config
    in the metadata, as Lightricks' does, and its statistics under Lightricks' names. The host's own module is
    compared in test_host_ltx24.py."""
    import json

    from framestream.vae_core.models.ltx24.config import DiffusionDecoderConfig
    from framestream.vae_core.models.ltx24.model import DiffusionDecoderVAE

    config = ltx24_host_config()
    model = DiffusionDecoderVAE(DiffusionDecoderConfig.from_host(config))
    gen = torch.Generator().manual_seed(1)
    model.latents_mean.copy_(0.3 * torch.randn(128, generator=gen))
    model.latents_std.copy_(0.5 + torch.rand(128, generator=gen))
    names = {"latents_mean": "per_channel_statistics.mean-of-means",
             "latents_std": "per_channel_statistics.std-of-means"}
    _through_framestream_load_vae(comfy, model, "ltx2_diffusion_decoder", torch.randn(1, 128, 3, 2, 2, generator=gen),
                                  17, 24.0, size=64, workflow="ltx2_diffusion_decoder_to_file.json", names=names,
                                  metadata={"config": json.dumps({"vae": config})}, normalized_latents=True)


def test_ltx_video_workflow_and_the_hosts_load_vae(comfy):
    """The shipped workflow (FrameStream Load VAE) decodes as the library does, with Lightricks' zero padding.
    Through the host's Load VAE, FrameStream decodes as the host's VAE Decode does, which pads the decoder by
    reflection instead (LATENTs normalised by the file's statistics in both). That loader reads no metadata
    and takes its config from the widths, so the test VAE is the whole 0.9.0 model, stored in bf16."""
    from framestream.vae_core.models.ltx.model import LTXConfig, LTXVideoVAE

    url, base, _ = comfy
    model = _random(LTXVideoVAE(LTXConfig()))
    gen = torch.Generator().manual_seed(1)
    model.latents_mean.copy_(0.1 * torch.randn(128, generator=gen))
    model.latents_std.copy_(torch.rand(128, generator=gen) + 0.5)
    path = base / "models" / "vae" / "ltx_video_vae_test.safetensors"
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in ltx_to_original(model.state_dict(), "0.9.0").items()},
              path)
    del model
    latent = torch.randn(1, 128, 2, 2, 2, generator=gen)
    _save_latent(base, "ltx.latent", latent)

    frames, fps = run_shipped_decode(comfy, "ltx_video_decode_to_file.json", path.name, "ltx.latent")
    assert frames.shape == (9, 64, 64, 3) and fps == 24.0
    assert (frames - library_decode(path, latent, normalized_latents=True)).abs().max().item() <= FILE_TOL

    prompt = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": path.name}},
        "2": {"class_type": "LoadLatent", "inputs": {"latent": "ltx.latent"}},
        "3": {"class_type": "FrameStreamDecode", "inputs": {"vae": ["1", 0], "samples": ["2", 0]}},
        "4": {"class_type": "FrameStreamTestProbeImage", "inputs": {"images": ["3", 0], "name": "fs_ltx"}},
        "5": {"class_type": "VAEDecode", "inputs": {"vae": ["1", 0], "samples": ["2", 0]}},
        "6": {"class_type": "FrameStreamTestProbeImage", "inputs": {"images": ["5", 0], "name": "host_ltx"}},
    }
    assert_success(run_prompt(url, prompt))
    ours, host = probe(base, "fs_ltx"), probe(base, "host_ltx").reshape(-1, 64, 64, 3)
    assert ours.shape == host.shape == (9, 64, 64, 3)
    assert (ours - host).abs().max().item() <= TOL
    assert (frames - host).abs().max().item() > 100 * TOL  # zeros against reflection at the borders
