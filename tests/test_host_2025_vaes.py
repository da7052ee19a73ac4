"""HunyuanVideo 1.5, Mochi and LTX-2 VAEs in a real ComfyUI on CPU (runs only with ``COMFYUI_DIR``, as
test_host_comfyui.py).

Each shipped decode workflow runs on a random-weight VAE the test writes, with the video written losslessly so
its frames can be compared with the library's decode of the same file. HunyuanVideo 1.5 and Mochi come through
the host's own Load VAE (0.3.64 builds its fixed full-width modules from their keys, so those files are full
width; the frames are tiny). 0.3.64 cannot load LTX-2, which comes through FrameStream Load VAE. (0.3.64 loads a
HunyuanVideo 1.5 file as its HunyuanImage refiner VAE: its own VAE Decode then refuses 32-channel latents.)
"""

from __future__ import annotations

import torch
from safetensors.torch import save_file

from helpers import FILE_TOL, library_decode, needs_host, run_shipped_decode
from helpers import save_latent_input as _save_latent
from oracle import SMALL_20, diffusers_hv15, diffusers_ltx2, diffusers_mochi, to_genmo

from framestream.vae_core import load_vae
from framestream.vae_core.models.hunyuan15.checkpoints import diffusers_to_original
from framestream.vae_core.streaming import engine

pytestmark = needs_host


def test_hunyuan_video_1_5_workflow_through_the_hosts_load_vae(comfy):
    _, base, _ = comfy
    ref = diffusers_hv15(dict(block_out_channels=(128, 256, 512, 1024, 1024), layers_per_block=2))
    path = base / "models" / "vae" / "hunyuanvideo15_vae_test.safetensors"
    save_file({k: v.contiguous() for k, v in diffusers_to_original(ref.state_dict()).items()}, path)
    del ref
    latent = torch.randn(1, 32, 3, 2, 2, generator=torch.Generator().manual_seed(3))
    _save_latent(base, "hunyuan15.latent", latent)
    frames, fps = run_shipped_decode(comfy, "hunyuan_video_1_5_decode_to_file.json", path.name, "hunyuan15.latent")
    assert frames.shape == (9, 32, 32, 3) and fps == 24.0
    assert (frames - library_decode(path, latent)).abs().max().item() <= FILE_TOL


def test_mochi_workflow_through_the_hosts_load_vae(comfy):
    _, base, _ = comfy
    ref = diffusers_mochi(dict(), std=0.1)  # diffusers' defaults: the released widths
    path = base / "models" / "vae" / "mochi_vae_test.safetensors"
    save_file({k: v.contiguous() for k, v in to_genmo(ref.state_dict()).items()}, path)
    del ref
    latent = torch.randn(1, 12, 2, 2, 2, generator=torch.Generator().manual_seed(4))
    _save_latent(base, "mochi.latent", latent)
    frames, fps = run_shipped_decode(comfy, "mochi_decode_to_file.json", path.name, "mochi.latent")
    expected = library_decode(path, latent)
    assert frames.shape == expected.shape and frames.shape[1:] == (16, 16, 3) and fps == 30.0
    assert (frames - expected).abs().max().item() <= FILE_TOL


def test_ltx2_workflow_through_framestream_load_vae(comfy):
    _, base, _ = comfy
    path = base / "models" / "vae" / "ltx2_vae_test.safetensors"
    save_file({k: v.contiguous() for k, v in diffusers_ltx2(SMALL_20).state_dict().items()}, path)
    latent = torch.randn(1, 128, 3, 2, 2, generator=torch.Generator().manual_seed(5))
    _save_latent(base, "ltx2.latent", latent)
    frames, fps = run_shipped_decode(comfy, "ltx2_decode_to_file.json", path.name, "ltx2.latent")
    assert frames.shape == (17, 64, 64, 3) and fps == 24.0
    # the node reads the host's LATENTs: normalised by the file's per-channel statistics, as for LTX-Video
    expected = engine.decode(load_vae(str(path)).use_host_conventions(), latent)
    assert (frames - expected).abs().max().item() <= FILE_TOL
    assert (frames - library_decode(path, latent)).abs().max().item() > 100 * FILE_TOL  # raw latents differ
