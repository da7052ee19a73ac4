"""The long-video workflows inside a real ComfyUI on CPU, with small random-weight Wan I2V / FLF2V models.

Runs only with ``COMFYUI_DIR`` (see test_host_comfyui.py, whose server fixture
it reuses). The models are the host's own ``WanModel`` at width 128 (the host
reads one head per 128 channels), written by the host's interpreter. Text and
CLIP-vision encoders are replaced by probe nodes that return tensors of the
real sizes (4096-wide text tokens, 257 x 1280 image tokens per image; they are
in test_host_comfyui's probe pack), since no T5 or CLIP weights exist here;
everything else is the shipped workflow.
"""

from __future__ import annotations

import copy

import torch

from helpers import (DIT_LENGTH as LENGTH, DIT_SIZE as SIZE, VAE_NAME, assert_fails_with, assert_success, count_frames,
                     load_workflow, needs_host, probe, run_prompt)

pytestmark = needs_host

def small(prompt: dict, unet: str) -> dict:
    """The workflow with the test models, probe encoders, 32x32 px, 9-frame clips and 2 sampling steps."""
    prompt = copy.deepcopy(prompt)
    for node_id, node in list(prompt.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "CLIPTextEncode":
            prompt[node_id] = {"class_type": "FrameStreamTestText", "inputs": {"seed": int(node_id)}}
        elif kind == "CLIPVisionEncode":
            prompt[node_id] = {"class_type": "FrameStreamTestClipVision", "inputs": {"image": inputs["image"]}}
        elif kind in ("CLIPLoader", "CLIPVisionLoader"):
            del prompt[node_id]
        elif kind == "UNETLoader":
            inputs["unet_name"] = unet
        elif kind == "VAELoader":
            inputs["vae_name"] = VAE_NAME
        for key, value in {"width": SIZE, "height": SIZE, "length": LENGTH, "segment_frames": LENGTH,
                           "steps": 2}.items():
            if key in inputs and not isinstance(inputs[key], list):
                inputs[key] = value
    return prompt


def add(prompt: dict, node: dict) -> str:
    node_id = str(max(int(k) for k in prompt) + 1)
    prompt[node_id] = node
    return node_id


def add_probe(prompt: dict, source: list, name: str, kind: str = "Latent") -> None:
    socket = {"Latent": "samples", "Conditioning": "conditioning"}[kind]
    add(prompt, {"class_type": f"FrameStreamTestProbe{kind}", "inputs": {socket: source, "name": name}})


def sampled_with(prompt: dict, model: list, name: str, shift: float = 8.0) -> None:
    """Another KSampler like the workflow's, on ``model``, probed."""
    sampler = copy.deepcopy(prompt["12"])
    shift = add(prompt, {"class_type": "ModelSamplingSD3", "inputs": {"model": model, "shift": shift}})
    sampler["inputs"]["model"] = [shift, 0]
    add_probe(prompt, [add(prompt, sampler), 0], name)


def test_image_strength_is_exact_in_the_host(host_with_dits):
    """λ = 0 samples exactly like the model whose image values are zero; λ = 1 exactly like the model itself."""
    url, base, _ = host_with_dits
    prompt = small(load_workflow("wan_i2v_image_strength.json"), "test_wan_i2v.safetensors")
    prompt["10"]["inputs"]["strength"] = 0.0
    add_probe(prompt, ["12", 0], "strength_0")
    zeroed = add(prompt, {"class_type": "UNETLoader",
                          "inputs": {"unet_name": "test_wan_i2v_no_image_values.safetensors", "weight_dtype": "default"}})
    sampled_with(prompt, [zeroed, 0], "no_image_values")
    unit = add(prompt, {"class_type": "FrameStreamImageAttention",
                        "inputs": {**prompt["10"]["inputs"], "strength": 1.0}})
    sampled_with(prompt, [unit, 0], "strength_1")
    sampled_with(prompt, ["1", 0], "unpatched")
    assert_success(run_prompt(url, prompt))
    assert torch.equal(probe(base, "strength_0"), probe(base, "no_image_values"))
    assert torch.equal(probe(base, "strength_1"), probe(base, "unpatched"))
    assert not torch.allclose(probe(base, "strength_0"), probe(base, "unpatched"), atol=1e-3)
    [video] = list((base / "output" / "FrameStream").glob("i2v_*.mp4"))
    assert count_frames(video) == (LENGTH, 16.0)


def test_the_strength_range_is_read_at_sampling_time_after_a_shift(host_with_dits):
    """end_percent 0.6 at shift 3 (set after the strength node) is sigma 0.67, so both of the 2 steps (sigma 1
    and about 0.75) get λ = 0: the run equals the zeroed checkpoint's. Read at the checkpoint's shift 8 it
    would be sigma 0.84, and the second step would run unpatched."""
    url, base, _ = host_with_dits
    prompt = small(load_workflow("wan_i2v_image_strength.json"), "test_wan_i2v.safetensors")
    prompt["10"]["inputs"].update(strength=0.0, end_percent=0.6)
    prompt["11"]["inputs"]["shift"] = 3.0
    add_probe(prompt, ["12", 0], "range_strength_0")
    zeroed = add(prompt, {"class_type": "UNETLoader",
                          "inputs": {"unet_name": "test_wan_i2v_no_image_values.safetensors", "weight_dtype": "default"}})
    sampled_with(prompt, [zeroed, 0], "range_no_image_values", shift=3.0)
    assert_success(run_prompt(url, prompt))
    assert torch.equal(probe(base, "range_strength_0"), probe(base, "range_no_image_values"))


def test_strength_node_refuses_a_text_to_video_model_in_the_host(host_with_dits):
    url, _, _ = host_with_dits
    prompt = small(load_workflow("wan_i2v_image_strength.json"), "test_wan_t2v.safetensors")
    assert_fails_with(url, prompt, "no image cross-attention")


def test_keyframe_segments_are_the_hosts_first_last_frame_conditioning(host_with_dits):
    """Each segment's conditioning equals WanFirstLastFrameToVideo's for its two keyframes; the stitched file
    holds every frame once; image strength 0 on the FLF2V model equals zeroed image values."""
    url, base, _ = host_with_dits
    prompt = small(load_workflow("wan_keyframes_to_video.json"), "test_wan_flf2v.safetensors")
    prompt["13"]["inputs"]["perturbation"] = 0.0  # exactly the host's conditioning
    add_probe(prompt, ["13", 0], "fs_keyframes", "Conditioning")
    # image strength on the FLF2V model (514 image tokens): lambda = 0 is the model with zeroed image values
    zeroed = add(prompt, {"class_type": "UNETLoader", "inputs": {
        "unet_name": "test_wan_flf2v_no_image_values.safetensors", "weight_dtype": "default"}})
    patched = add(prompt, {"class_type": "FrameStreamImageAttention", "inputs": {
        "model": ["1", 0], "strength": 0.0, "start_percent": 0.0, "end_percent": 1.0, "first_block": 0,
        "last_block": -1}})
    for model, name in ((zeroed, "flf_no_image_values"), (patched, "flf_strength_0")):
        shifted = add(prompt, {"class_type": "ModelSamplingSD3", "inputs": {"model": [model, 0], "shift": 8.0}})
        guider = add(prompt, {"class_type": "FrameStreamUnconditionalGuider",
                              "inputs": {**prompt["15"]["inputs"], "model": [shifted, 0]}})
        sampled = add(prompt, {"class_type": "SamplerCustomAdvanced",
                               "inputs": {**prompt["19"]["inputs"], "guider": [guider, 0]}})
        add_probe(prompt, [sampled, 0], name)
    for segment in (0, 1):
        images = [add(prompt, {"class_type": "ImageFromBatch",
                               "inputs": {"image": ["11", 0], "batch_index": segment + i, "length": 1}})
                  for i in (0, 1)]
        vision = [add(prompt, {"class_type": "FrameStreamTestClipVision", "inputs": {"image": [i, 0]}}) for i in images]
        flf = add(prompt, {"class_type": "WanFirstLastFrameToVideo", "inputs": {
            "positive": ["3", 0], "negative": ["4", 0], "vae": ["5", 0], "width": SIZE, "height": SIZE,
            "length": LENGTH, "batch_size": 1, "start_image": [images[0], 0], "end_image": [images[1], 0],
            "clip_vision_start_image": [vision[0], 0], "clip_vision_end_image": [vision[1], 0]}})
        add_probe(prompt, [flf, 0], f"host_keyframes_{segment}", "Conditioning")
    assert_success(run_prompt(url, prompt))
    from safetensors.torch import load_file

    ours = load_file(base / "output" / "fs_keyframes.safetensors")
    assert ours["value"].shape == (2, 16, 3, 4, 4) and ours["clip"].shape == (2, 514, 1280)
    for segment in (0, 1):
        theirs = load_file(base / "output" / f"host_keyframes_{segment}.safetensors")
        assert (ours["value"][segment] - theirs["value"][0]).abs().max().item() <= 1e-4
        assert torch.equal(ours["mask"], theirs["mask"])
        assert torch.equal(ours["clip"][segment], theirs["clip"][0])
    assert torch.equal(probe(base, "flf_strength_0"), probe(base, "flf_no_image_values"))
    [video] = list((base / "output" / "FrameStream").glob("keyframes_*.mp4"))
    assert count_frames(video) == (2 * (LENGTH - 1) + 1, 16.0)


def test_extension_joins_latents_and_frame_guidance_is_affine_in_w(host_with_dits):
    """The extended clip is one latent decoded in one stream. With one Euler step the sample is affine in the
    denoised prediction, so in w: w = 0 is the host's CFGGuider, and w = 0.5 lies halfway between 0 and 1."""
    url, base, clip = host_with_dits
    prompt = small(load_workflow("wan_extend_clip.json"), "test_wan_i2v.safetensors")
    add_probe(prompt, ["17", 0], "joined")
    one_step = add(prompt, {"class_type": "BasicScheduler",
                            "inputs": {"model": ["11", 0], "scheduler": "simple", "steps": 1, "denoise": 1.0}})
    euler = add(prompt, {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}})

    def sample(guider: str, name: str) -> None:
        out = add(prompt, {"class_type": "SamplerCustomAdvanced", "inputs": {
            "noise": ["13", 0], "guider": [guider, 0], "sampler": [euler, 0], "sigmas": [one_step, 0],
            "latent_image": ["10", 2]}})
        add_probe(prompt, [out, 0], name)

    for w in (0.0, 0.5, 1.0):
        sample(add(prompt, {"class_type": "FrameStreamUnconditionalGuider",
                            "inputs": {**prompt["12"]["inputs"], "frame_guidance": w}}), f"w_{w}")
    sample(add(prompt, {"class_type": "CFGGuider", "inputs": {"model": ["11", 0], "positive": ["10", 0],
                                                              "negative": ["10", 1], "cfg": 5.0}}), "cfg_guider")
    assert_success(run_prompt(url, prompt))
    joined = probe(base, "joined")
    assert joined.shape == (1, 16, 3 + 3 - 1, 4, 4) and torch.equal(joined[:, :, :3], clip)
    [video] = list((base / "output" / "FrameStream").glob("extended_*.mp4"))
    assert count_frames(video) == (4 * 4 + 1, 16.0)
    w0, w05, w1 = (probe(base, f"w_{w}") for w in (0.0, 0.5, 1.0))
    assert torch.equal(w0, probe(base, "cfg_guider"))
    assert (w05 - (w0 + w1) / 2).abs().max().item() <= 1e-4 * max(1.0, w1.abs().max().item())
    assert not torch.allclose(w0, w1, atol=1e-3)
