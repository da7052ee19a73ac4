"""Numeric checks of the host SeedVR2 VAE (reduced width, random weights, CPU, fp32).
    /work/hosts/venv33/bin/python docs/research/seedvr2_scripts/checks.py"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import build_small as B  # noqa: E402  (sets --cpu and imports comfy)
import torch  # noqa: E402
import comfy.ldm.seedvr.vae as V  # noqa: E402
import ref  # noqa: E402

torch.manual_seed(0)
d = lambda a, b: (a - b).abs().max().item()
m = B.build_small()
sd = {k: v.float() for k, v in m.state_dict().items()}


def whole_decode(z):   # no temporal slicing, no conv/GN memory splitting: the whole clip in one pass
    m.use_slicing = False; m.set_memory_limit(None, None)
    try:
        return m.decode(z)
    finally:
        m.use_slicing = True; m.set_memory_limit(0.5, 0.5)


def whole_encode(x):
    m.use_slicing = False; m.set_memory_limit(None, None)
    try:
        return m.comfy_format_encoded(m.encode(x))
    finally:
        m.use_slicing = True; m.set_memory_limit(0.5, 0.5)


with torch.no_grad():
    print("== 1. host default (temporal slicing, 1 latent frame per call) vs whole clip; ref vs host")
    for T in (1, 2, 3, 6):
        z = torch.randn(1, 16, T, 4, 6)
        a, b = m.decode(z), whole_decode(z)
        r, rs1, rs2 = ref.decode(sd, z), ref.decode(sd, z, chunk=1), ref.decode(sd, z, chunk=2)
        print(f"decode T={T}: out {tuple(a.shape)}  host sliced-vs-whole {d(a,b):.2e}  ref-whole {d(r,a):.2e}"
              f"  ref-stream(1) {d(rs1,a):.2e}  ref-stream(2) {d(rs2,a):.2e}  |x|max {a.abs().max():.2f}")
    for Fr in (1, 5, 9, 13, 17, 11, 8):
        x = torch.rand(1, 3, Fr, 32, 48) * 2 - 1
        a, b = m.comfy_format_encoded(m.encode(x)), whole_encode(x)
        r = ref.encode(sd, x)
        rs = [d(ref.encode(sd, x, chunk=c), a) if ref.encode(sd, x, chunk=c).shape == a.shape else float('nan') for c in (1, 3, 4)]
        print(f"encode F={Fr}: z {tuple(a.shape)}  host sliced-vs-whole {d(a,b):.2e}  ref-whole {d(r,a):.2e}"
              f"  ref-stream(1,3,4) {rs[0]:.2e} {rs[1]:.2e} {rs[2]:.2e}")

    print("== 2. memory-limit paths: channel-chunked GroupNorm, conv split along H/W (see also extra_checks.py)")
    z = torch.randn(1, 16, 3, 4, 6)
    base = whole_decode(z)
    m.use_slicing = False
    for conv_lim, norm_lim in ((1e-3, None), (None, 1e-7), (1e-3, 1e-7)):
        m.set_memory_limit(conv_lim, norm_lim)
        try:
            out = m.decode(z); msg = f"{d(out, base):.2e}"
        except Exception as e:  # noqa: BLE001
            msg = f"ERROR {type(e).__name__}: {e}"
        print(f"decode conv_limit={conv_lim} GiB norm_limit={norm_lim} GiB vs unlimited: {msg}")
    x = torch.rand(1, 3, 5, 32, 48) * 2 - 1
    base = whole_encode(x); m.use_slicing = False
    for conv_lim, norm_lim in ((1e-3, None), (None, 1e-7)):
        m.set_memory_limit(conv_lim, norm_lim)
        try:
            out = m.comfy_format_encoded(m.encode(x)); msg = f"{d(out, base):.2e}"
        except Exception as e:  # noqa: BLE001
            msg = f"ERROR {type(e).__name__}: {e}"
        print(f"encode conv_limit={conv_lim} GiB norm_limit={norm_lim} GiB vs unlimited: {msg}")
    m.use_slicing = True; m.set_memory_limit(0.5, 0.5)

    print("== 3. causality / temporal receptive field (tol 0), latent 2x2, T=40 -> 157 frames")
    T = 40
    z = torch.randn(1, 16, T, 2, 2)
    a = m.decode(z)
    for k in (0, 1, 20):
        z2 = z.clone(); z2[:, :, k] += 1.0
        ch = ((m.decode(z2) - a).abs().amax(dim=(0, 1, 3, 4)) > 0).nonzero().flatten()
        print(f"perturb latent {k}: changed output frames {ch.min().item()}..{ch.max().item()} (first pixel frame of latent k = {max(0, 4*k-3)})")
    x = torch.rand(1, 3, 4 * 30 + 1, 16, 16) * 2 - 1
    a = m.encode(x)
    for p in (0, 1, 4, 5, 40):
        x2 = x.clone(); x2[:, :, p] += 0.5
        ch = ((m.encode(x2) - a).abs().amax(dim=(0, 1, 3, 4)) > 0).nonzero().flatten()
        print(f"perturb pixel frame {p}: changed latent frames {ch.min().item()}..{ch.max().item()} (latent of frame p = {(p + 3)//4})")

    print("== 4. spatial: host tiled decode (Wrapper.decode_tiled) vs whole; GroupNorm/attention are per whole frame")
    z = torch.randn(1, 16, 3, 12, 12)
    a = m.decode(z)
    for tile, ov in ((12, 4), (8, 2), (6, 2)):
        t = m.decode_tiled(z, tile_x=tile, tile_y=tile, overlap=ov)
        print(f"tile {tile} lat, overlap {ov} lat: out {tuple(t.shape)} max diff {d(t, a):.3f}  (|x|max {a.abs().max():.2f})")
    x = torch.rand(1, 3, 5, 96, 96) * 2 - 1
    a = m.comfy_format_encoded(m.encode(x))
    for tile, ov in ((96, 32), (64, 16)):
        t = m.comfy_format_encoded(m.encode_tiled(x, tile_x=tile, tile_y=tile, overlap=ov))
        print(f"encode tile {tile}px overlap {ov}px: z {tuple(t.shape)} max diff {d(t, a):.3f}  (|z|max {a.abs().max():.2f})")
    z = torch.randn(1, 16, 2, 4, 4); zz = z.clone(); zz[..., 0, 0] += 1
    dd = (m.decode(zz) - m.decode(z)).abs().amax(dim=(0, 1, 2))
    print(f"perturb latent pixel (0,0) of a 4x4 latent: output pixels changed: {(dd > 0).sum().item()} of {dd.numel()}")
