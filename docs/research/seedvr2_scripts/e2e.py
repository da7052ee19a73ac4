"""comfy.sd.VAE end to end with the reduced-width host model; compare with ref.py.
    /work/hosts/venv33/bin/python docs/research/seedvr2_scripts/e2e.py"""
import os, sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_small as B, torch, ref
import comfy.ldm.seedvr.vae as V, comfy.sd, nodes
d = lambda a, b: (a - b).abs().max().item()
small = B.build_small()
sd = small.state_dict()
V.BYTEDANCE_BLOCK_OUT_CHANNELS = (32, 64, 96, 96)       # comfy.sd.VAE builds VideoAutoencoderKLWrapper() itself
vae = comfy.sd.VAE(sd=sd)
print("vae_dtype", vae.vae_dtype, "latent_channels", vae.latent_channels, "latent_dim", vae.latent_dim,
      "handles_tiling", vae.handles_tiling, "crop_input", vae.crop_input, "working_dtypes", vae.working_dtypes)
print("upscale_ratio(T)", [vae.upscale_ratio[0](t) for t in (1, 2, 3, 5)], "downscale_ratio(F)", [vae.downscale_ratio[0](f) for f in (1, 4, 5, 8, 9)],
      "temporal_compression_decode", vae.temporal_compression_decode(), "spacial", vae.spacial_compression_decode())
print("memory_used_decode(1,16,21,135,240) = %.2f GiB" % (vae.memory_used_decode((1, 16, 21, 135, 240), torch.float16) / 2**30))
print("memory_used_encode(1,3,81,1080,1920) fp16 = %.2f GiB" % (vae.memory_used_encode((1, 3, 81, 1080, 1920), torch.float16) / 2**30))
sdf = {k: v.float() for k, v in sd.items()}
with torch.no_grad():
    z = torch.randn(2, 16, 3, 4, 6)
    img = vae.decode(z)
    r = ((ref.decode(sdf, z) + 1) / 2).clamp(0, 1).movedim(1, -1)
    print("VAE.decode", tuple(z.shape), "->", tuple(img.shape), img.dtype, "range", img.min().item(), img.max().item(), "vs ref", d(img, r))
    node_out = nodes.VAEDecode().decode(vae, {"samples": z})[0]
    print("VAEDecode node ->", tuple(node_out.shape))
    tiled = nodes.VAEDecodeTiled().decode(vae, {"samples": z}, tile_size=512, overlap=128, temporal_size=64, temporal_overlap=8)[0]
    print("VAEDecodeTiled(512,128,64,8) ->", tuple(tiled.shape), "vs VAEDecode", d(tiled, node_out))
    frames = torch.rand(9, 32, 48, 3)                    # IMAGE batch = one 9-frame video
    lat = vae.encode(frames)
    rz = ref.encode(sdf, frames.movedim(-1, 0)[None] * 2 - 1)
    print("VAE.encode", tuple(frames.shape), "->", tuple(lat.shape), "vs ref", d(lat, rz))
    lat1 = vae.encode(frames[:1])
    print("VAE.encode 1 frame ->", tuple(lat1.shape))
    lat5 = vae.encode(torch.rand(2, 5, 32, 48, 3))      # 5-D IMAGE (B,T,H,W,C) as SeedVR2Preprocess emits
    print("VAE.encode 5-D (2,5,32,48,3) ->", tuple(lat5.shape))
    odd = vae.encode(torch.rand(5, 36, 44, 3))
    print("VAE.encode (5,36,44,3) (not /8) ->", tuple(odd.shape), " decode ->", tuple(vae.decode(odd).shape))
