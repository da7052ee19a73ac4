"""Decoding while an autoregressive sampler generates, in a real ComfyUI on CPU (runs only with ``COMFYUI_DIR``,
in a host that has Sampler AR Video: 0.33): the shipped workflow on a small random Causal-Wan checkpoint in the
host's own layout, its file against decoding the sampler's latent afterwards."""

from __future__ import annotations

import json
import urllib.request

import pytest

from helpers import (DIT_LENGTH, DIT_SIZE, FILE_TOL, VAE_NAME, assert_fails_with, assert_success, count_frames,
                     load_workflow, needs_host, probe, read_file_frames, run_prompt)

pytestmark = needs_host


@pytest.fixture(scope="module")
def ar_host(host_with_dits):
    url, base, _ = host_with_dits
    with urllib.request.urlopen(f"{url}/object_info/SamplerARVideo") as r:
        if "SamplerARVideo" not in json.load(r):
            pytest.skip("this host has no autoregressive video sampler (Sampler AR Video came in 2026)")
    return url, base


def small_ar_prompt(prefix: str, codec: str = "h264 lossless (RGB)") -> dict:
    """The shipped workflow on the test files: the Causal-Wan test DiT, probe text encoders, 32x32 px, 9 frames in
    blocks of one latent frame, 2 steps, the live file lossless; and FrameStream Decode of the sampler's latent
    afterwards, probed."""
    prompt = load_workflow("wan_ar_live_decode.json")
    prompt["1"]["inputs"]["unet_name"] = "test_causal_wan.safetensors"
    prompt["2"]["inputs"]["vae_name"] = VAE_NAME
    prompt["3"]["inputs"].update(filename_prefix=f"FrameStream/{prefix}", codec=codec)
    del prompt["4"]
    prompt["5"] = {"class_type": "FrameStreamTestText", "inputs": {"seed": 5}}
    prompt["6"] = {"class_type": "FrameStreamTestText", "inputs": {"seed": 6}}
    prompt["8"]["inputs"]["num_frame_per_block"] = 1
    prompt["9"]["inputs"]["steps"] = 2
    prompt["11"]["inputs"].update(width=DIT_SIZE, height=DIT_SIZE, length=DIT_LENGTH)
    prompt["13"]["inputs"]["filename_prefix"] = f"FrameStream/{prefix}"
    prompt["20"] = {"class_type": "FrameStreamDecode", "inputs": {"vae": ["2", 0], "samples": ["12", 0]}}
    prompt["21"] = {"class_type": "FrameStreamTestProbeImage", "inputs": {"images": ["20", 0], "name": f"{prefix}_after"}}
    return prompt


def test_the_live_file_equals_decoding_the_samplers_latent_afterwards(ar_host):
    url, base = ar_host
    result = run_prompt(url, small_ar_prompt("live"))
    assert_success(result)
    [video] = list((base / "output" / "FrameStream").glob("live_*.mp4"))
    assert count_frames(video) == (DIT_LENGTH, 16.0)
    after = probe(base, "live_after")
    assert after.shape == (DIT_LENGTH, DIT_SIZE, DIT_SIZE, 3)
    assert (read_file_frames(video) - after).abs().max().item() <= FILE_TOL
    assert [p.name for p in video.parent.iterdir() if p.name.startswith(".")] == []  # no partial file left


def test_a_vae_for_another_latent_is_refused_before_sampling(ar_host):
    """A Wan 2.2 VAE (48 latent channels) on the Causal-Wan's 16-channel latent: one message, no sampling, no file."""
    from safetensors.torch import save_file

    from oracle import WAN22_SMALL, diffusers_wan

    url, base = ar_host
    save_file(diffusers_wan(WAN22_SMALL).state_dict(), base / "models" / "vae" / "wan22_small.safetensors")
    prompt = small_ar_prompt("wrong_vae")
    prompt["2"] = {"class_type": "FrameStreamVAELoader",
                   "inputs": {"vae_name": "wan22_small.safetensors", "precision": "fp32"}}
    del prompt["20"], prompt["21"]
    assert_fails_with(url, prompt, "the VAE does not fit this autoregressive model's latent: latent has 16 channels "
                                   "but the Wan 2.2 VAE expects 48")
    assert not list((base / "output" / "FrameStream").glob("wrong_vae_*"))
