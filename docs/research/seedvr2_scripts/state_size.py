"""Full-width host model (random weights): what the host's temporal slicing carries between calls
(memory_cache entries), scaled to a 1920x1080 (latent 240x135) frame in fp16.
    /work/hosts/venv33/bin/python docs/research/seedvr2_scripts/state_size.py"""
import os, sys; sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_small as B, torch, time
import comfy.ldm.seedvr.vae as V
m = B.build_small(channels=(128, 256, 512, 512))
print("full width params %.3fM" % (sum(p.numel() for p in m.parameters()) / 1e6))
caches = []
orig_dec, orig_enc = m._decode, m._encode
def grab(orig):
    def f(z, memory_state=V.MemoryState.DISABLED, memory_cache=None):
        out = orig(z, memory_state=memory_state, memory_cache=memory_cache)
        if memory_cache is not None:
            caches.append({k: tuple(v.shape) for k, v in memory_cache.items()})
        return out
    return f
m._decode, m._encode = grab(orig_dec), grab(orig_enc)
def report(name, lat_hw):
    c = caches[-1]
    tot = 0
    for shp in c.values():
        b, ch, t, h, w = shp
        tot += ch * t * (h * 135 // lat_hw[0]) * (w * 240 // lat_hw[1]) * 2
    print(f"{name}: {len(c)} cached convs; frames per entry {sorted(set(s[2] for s in c.values()))}; "
          f"fp16 bytes at 1080p (latent 135x240): {tot/2**30:.2f} GiB")
with torch.no_grad():
    z = torch.randn(1, 16, 3, 2, 2)
    t0 = time.perf_counter(); x = m.decode(z); print("decode", tuple(x.shape), "%.1fs" % (time.perf_counter() - t0))
    report("decoder", (2, 2))
    caches.clear()
    x = torch.rand(1, 3, 13, 16, 16) * 2 - 1
    t0 = time.perf_counter(); zz = m.encode(x); print("encode", tuple(zz.shape), "%.1fs" % (time.perf_counter() - t0))
    report("encoder", (2, 2))
