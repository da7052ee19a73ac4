"""Compare ComfyUI 0.33.0 CausalDiffusionVAE (LTX 2.4 diffusion decoder) against
diffusers 0.42.1 LTX2VideoDiffusionDecoderModel on CPU with random weights.

Run with the host venv (it has comfy deps *and* diffusers 0.42.1, same file as
/work/main/.venv):
    /work/hosts/venv33/bin/python /tmp/ltx24/compare.py

What it does
  1. builds a small random-weight diffusers LTX2VideoDiffusionDecoderModel
     (latent_channels must stay 128: the host's per_channel_statistics buffers
     are hard-coded to 128),
  2. converts its state dict to the host layout (fused qkv, proj, q_norm/k_norm,
     t_embedder.mlp.{0,2}, per_channel_statistics.{mean,std}-of-means),
  3. decodes the same normalized latent (3 latent frames, 2x2 latent pixels)
       (A) host CausalDiffusionVAE.decode(z)   (un_normalize + torch.Generator seed 0)
       (B) diffusers model.decode(un_normalized z, generator=Generator().manual_seed(0))
       (C) full host path comfy.sd.VAE(sd, metadata={"config": {"vae": ...}}).decode(z)
           vs diffusers LTX2VideoDiffusionDecodePipeline(..., output_type="pt")
     and records the initial noise each one drew (torch.randn is wrapped),
  4. repeats for fp32 / bf16 / fp64 and for a 3-step x0 loop.
"""
import copy
import json
import sys

sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, "/work/hosts/comfy-0.33.0")
import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import torch  # noqa: E402

import comfy.ldm.lightricks.vae.na_diffusion_decoder as host_mod  # noqa: E402
import comfy.sd  # noqa: E402
import diffusers  # noqa: E402
from diffusers import LTX2VideoDiffusionDecoderModel  # noqa: E402
from diffusers.pipelines.ltx2.pipeline_ltx2_diffusion_decode import LTX2VideoDiffusionDecodePipeline  # noqa: E402

torch.manual_seed(1234)

# ---------------------------------------------------------------- config
LAT_C = 128
HEAD_DIM = 16
STAGE_CH = (128, 64, 32, 32, 16)
DEPTHS = (2, 2, 1, 1, 2)
# kernels must be <= the grid in diffusers (it raises otherwise; the host clamps)
KERNELS = ((3, 1, 1), (3, 3, 3), (3, 3, 3), (3, 5, 5))
STRIDES = ((1, 2, 2), (2, 1, 1), (2, 2, 2), (2, 2, 2))
REDUCTIONS = (2, 2, 1, 2)
K5 = (11, 11, 11)
T_EMB = 32


def make_diffusers(steps=1, out_type="x0"):
    return LTX2VideoDiffusionDecoderModel(
        out_channels=3, latent_channels=LAT_C, patch_size=4, decoder_head_dim=HEAD_DIM,
        decoder_stage_channels=STAGE_CH, decoder_stage_depths=DEPTHS, decoder_stage_kernels=KERNELS,
        decoder_upsample_strides=STRIDES, decoder_upsample_channel_reductions=REDUCTIONS,
        decoder_stage5_kernel=K5, decoder_t_emb_dim=T_EMB, decoder_model_output_type=out_type,
        decoder_num_inference_steps=steps,
    ).eval()


def host_config(steps=1, out_type="x0"):
    return {
        "_class_name": "CausalDiffusionVAE",
        "dims": 3,
        "model_output_type": out_type,
        # tiny encoder (unused by decode, but CausalDiffusionVAE always builds one)
        "encoder": {"dims": 3, "in_channels": 3, "out_channels": LAT_C,
                    "blocks": [["res_x", {"num_layers": 1}]], "patch_size": 4,
                    "latent_log_var": "constant", "norm_layer": "pixel_norm", "base_channels": 8},
        "decoder": {
            "in_channels": LAT_C, "out_channels": 3, "patch_size": 4, "head_dim": HEAD_DIM,
            "stage_channels": list(STAGE_CH), "stage_depths": list(DEPTHS),
            "stage_kernels": [list(k) for k in KERNELS] + [list(K5)],
            "upsamples": [[list(s), r] for s, r in zip(STRIDES, REDUCTIONS)],
            "stage5_kernel": list(K5), "t_emb_dim": T_EMB,
            "timestep_scale_multiplier": 1000.0, "default_num_inference_steps": steps,
        },
    }


def randomize(model):
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1 and ("norm" in name):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "scale_shift_table" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p.shape[-1]
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
        model.latents_mean.copy_(0.3 * torch.randn(LAT_C, generator=g))
        model.latents_std.copy_(0.5 + torch.rand(LAT_C, generator=g))


def diffusers_to_host(sd):
    """diffusers LTX2VideoDiffusionDecoderModel state dict -> host (checkpoint) layout."""
    out = {}
    for k, v in sd.items():
        if k == "latents_mean":
            out["per_channel_statistics.mean-of-means"] = v
            continue
        if k == "latents_std":
            out["per_channel_statistics.std-of-means"] = v
            continue
        if ".attn.to_k." in k or ".attn.to_v." in k:
            continue  # fused below
        if ".attn.to_q." in k:
            kind = k.rsplit(".", 1)[1]
            base = k.split(".attn.to_q.")[0]
            out[f"{base}.attn.qkv.{kind}"] = torch.cat(
                [sd[f"{base}.attn.to_q.{kind}"], sd[f"{base}.attn.to_k.{kind}"], sd[f"{base}.attn.to_v.{kind}"]], 0)
            continue
        nk = (k.replace(".attn.to_out.0.", ".attn.proj.")
               .replace(".attn.norm_q.", ".attn.q_norm.")
               .replace(".attn.norm_k.", ".attn.k_norm.")
               .replace("t_embedder.timestep_embedder.linear_1.", "t_embedder.mlp.0.")
               .replace("t_embedder.timestep_embedder.linear_2.", "t_embedder.mlp.2."))
        out[nk] = v
    return out


# ------------------------------------------------- noise capture
_captured = []
_orig_randn = torch.randn


def _rec_randn(*a, **kw):
    t = _orig_randn(*a, **kw)
    _captured.append(t.clone())
    return t


def capture(fn):
    _captured.clear()
    torch.randn = _rec_randn
    try:
        out = fn()
    finally:
        torch.randn = _orig_randn
    return out, list(_captured)


def run_case(label, dtype, steps=1, out_type="x0", T=3, H=2, W=2):
    dm = make_diffusers(steps, out_type)
    randomize(dm)
    host_sd = diffusers_to_host(dm.state_dict())
    hm = host_mod.CausalDiffusionVAE(config=host_config(steps, out_type)).eval()
    hdec_sd = {k: v for k, v in host_sd.items() if not k.startswith("per_channel")}
    missing, unexpected = hm.decoder.load_state_dict({k[len("decoder."):]: v for k, v in hdec_sd.items()}, strict=True), None
    hm.per_channel_statistics.get_buffer("mean-of-means").copy_(host_sd["per_channel_statistics.mean-of-means"])
    hm.per_channel_statistics.get_buffer("std-of-means").copy_(host_sd["per_channel_statistics.std-of-means"])
    dm.to(dtype)
    hm.to(dtype)

    g = torch.Generator().manual_seed(99)
    z = torch.randn(1, LAT_C, T, H, W, generator=g).to(dtype)  # normalized latent
    with torch.no_grad():
        out_h, noise_h = capture(lambda: hm.decode(z))
        z_dn = hm.per_channel_statistics.un_normalize(z)
        out_d, noise_d = capture(lambda: dm.decode(z_dn, generator=torch.Generator().manual_seed(0),
                                                   num_inference_steps=steps).sample)
    assert len(noise_h) == 1 and len(noise_d) == 1, (len(noise_h), len(noise_d))
    nd = (noise_h[0].float() - noise_d[0].float()).abs().max().item()
    diff = (out_h.float() - out_d.float()).abs()
    print(f"[{label}] dtype={dtype} steps={steps} type={out_type} latent={tuple(z.shape)} -> out={tuple(out_h.shape)} "
          f"noise_shape={tuple(noise_h[0].shape)} noise_maxdiff={nd:.3g} | out |max|={out_d.float().abs().max():.3g} "
          f"max_abs_diff={diff.max().item():.3g} mean_abs_diff={diff.mean().item():.3g}")
    return dm, hm, host_sd, z, out_h, out_d


def run_full_path(dm, host_sd, z, steps=1):
    """comfy.sd.VAE (detection + metadata config + process_output) vs diffusers pipeline."""
    sd = dict(host_sd)
    # the host model also holds an encoder; give it the tiny random one so load is clean
    tmp = host_mod.CausalDiffusionVAE(config=host_config(steps))
    for k, v in tmp.state_dict().items():
        if k.startswith("encoder."):
            sd[k] = v
    meta = {"config": json.dumps({"vae": host_config(steps)})}
    vae = comfy.sd.VAE(sd=sd, metadata=meta)
    print(f"[full] comfy.sd.VAE type={type(vae.first_stage_model).__name__} vae_dtype={vae.vae_dtype} "
          f"latent_channels={vae.latent_channels} mem_est(decode)={vae.memory_used_decode(z.shape, vae.vae_dtype)/2**20:.1f} MiB")
    with torch.no_grad():
        img_h, noise_h = capture(lambda: vae.decode(z.float()))  # (B, F, H, W, C) in [0, 1]
        pipe = LTX2VideoDiffusionDecodePipeline(diffusion_decoder=dm.float(), scheduler=None)
        pipe.set_progress_bar_config(disable=True)
        vid_d, noise_d = capture(lambda: pipe(z.float(), generator=torch.Generator().manual_seed(0),
                                              output_type="pt", denormalize=True).frames)  # (B, F, C, H, W)
    img_d = vid_d.permute(0, 1, 3, 4, 2)
    d = (img_h.float() - img_d.float()).abs()
    print(f"[full] host VAE.decode -> {tuple(img_h.shape)}; pipeline -> {tuple(img_d.shape)}; "
          f"noise_maxdiff={(noise_h[0]-noise_d[0]).abs().max().item():.3g} max_abs_diff={d.max().item():.3g}")


if __name__ == "__main__":
    print("torch", torch.__version__, "diffusers", diffusers.__version__, diffusers.__file__)
    dm, hm, host_sd, z, _, _ = run_case("A/B fp32", torch.float32)
    run_full_path(dm, host_sd, z)
    # fp64 unsupported by comfy_kitchen rms_rope_ (eager: fp32/bf16/fp16 only)
    _, _, _, _, hb, db = run_case("A/B bf16", torch.bfloat16)
    _, _, _, _, hf, df = run_case("A/B fp32 (reference for bf16)", torch.float32)
    print(f"[bf16 vs fp32 ref] host_bf16 err max={(hb.float()-hf).abs().max():.3g} mean={(hb.float()-hf).abs().mean():.3g}; "
          f"diffusers_bf16 err max={(db.float()-df).abs().max():.3g} mean={(db.float()-df).abs().mean():.3g}")
    run_case("A/B fp32 3-step x0", torch.float32, steps=3)
    run_case("A/B fp32 3-step v", torch.float32, steps=3, out_type="v")
    run_case("A/B fp32 T=4 H=3 W=2", torch.float32, T=4, H=3, W=2)


def build(T=3, H=2, W=2):
    """Random host CausalDiffusionVAE in the tiny config (for ref_decoder.py)."""
    dm = make_diffusers()
    randomize(dm)
    hm = host_mod.CausalDiffusionVAE(config=host_config()).eval()
    sd = diffusers_to_host(dm.state_dict())
    hm.load_state_dict({**{k: v for k, v in hm.state_dict().items() if k.startswith("encoder.")}, **sd}, strict=True)
    return hm, host_config(), (1, LAT_C, T, H, W)
