"""Extra host checks (reduced width, random weights, CPU):
 (a) conv spatial splitting (InflatedCausalConv3d.memory_limit_conv) at several limits vs unlimited,
 (b) tiled encode with a width that is not a multiple of 8,
 (c) bf16 / fp16 host decode vs fp32.
    /work/hosts/venv33/bin/python docs/research/seedvr2_scripts/extra_checks.py"""
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_small as B  # noqa: E402
import torch  # noqa: E402
import comfy.ldm.seedvr.vae as V  # noqa: E402

d = lambda a, b: (a - b).abs().max().item()
torch.manual_seed(0)
m = B.build_small()
splits = []
orig = V.InflatedCausalConv3d.memory_limit_conv


def spy(self, x, *, split_dim=3, padding=(0,) * 6, prev_cache=None):
    splits.append(split_dim)
    return orig(self, x, split_dim=split_dim, padding=padding, prev_cache=prev_cache)


V.InflatedCausalConv3d.memory_limit_conv = spy
with torch.no_grad():
    print("== (a) conv memory_limit splitting (no temporal slicing) vs unlimited")
    z = torch.randn(1, 16, 3, 4, 6)
    x = torch.rand(1, 3, 5, 32, 48) * 2 - 1
    m.use_slicing = False
    m.set_memory_limit(None, None)
    base, ebase = m.decode(z), m.encode(x)
    for lim in (2e-3, 1e-3, 5e-4, 2e-4, 1e-4, 5e-5):
        m.set_memory_limit(lim, None)
        splits.clear()
        try:
            msg = f"{d(m.decode(z), base):.2e}"
        except ValueError as e:
            msg = f"ValueError: {e}"
        nh, nw = sum(s == 4 for s in splits), sum(s == 5 for s in splits)
        try:
            emsg = f"{d(m.encode(x), ebase):.2e}"
        except ValueError as e:
            emsg = f"ValueError: {e}"
        print(f"limit {lim:g} GiB: decode {msg} (H-pieces {nh}, W-pieces {nw}); encode {emsg}")
    m.use_slicing = True
    m.set_memory_limit(5e-4, 1e-7)
    print("temporal slicing + conv split + chunked GroupNorm, decode vs whole:", f"{d(m.decode(z), base):.2e}")
    m.set_memory_limit(0.5, 0.5)

    print("== (b) tiled encode, width 60 (not a multiple of 8)")
    x = torch.rand(1, 3, 1, 40, 60) * 2 - 1
    a, t = m.encode(x), m.encode_tiled(x, tile_x=32, tile_y=64, overlap=8)
    print("whole", tuple(a.shape), "tiled", tuple(t.shape), "tiled last latent column |max|", t[..., -1].abs().max().item())

    print("== (c) host decode in bf16 / fp16 vs fp32")
    z = torch.randn(1, 16, 3, 4, 6)
    a = m.decode(z)
    for dt in (torch.bfloat16, torch.float16):
        b = copy.deepcopy(m).to(dt).decode(z.to(dt)).float()
        print(dt, "max %.2e mean %.2e (|x|max %.2f)" % ((a - b).abs().max(), (a - b).abs().mean(), a.abs().max()))
