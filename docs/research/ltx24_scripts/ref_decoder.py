"""Pure-torch reference of the LTX 2.4 diffusion decoder, written from the spec
(/tmp/ltx24_spec.md), reading the HOST checkpoint layout (fused attn.qkv ...).

Two execution modes:
  * chunk=None  : every block over the whole clip (like host/diffusers)
  * chunk=N     : every NA block processed N query-frames at a time, keys taken
                  from a slab [c0 - r, c1 + r) (widened to >= k frames at the clip
                  edges), writing into a separate output buffer (so keys are
                  never read after being overwritten).  This is the exact
                  "layer-wise temporal streaming" schedule.

Self-test against the host module:  /work/hosts/venv33/bin/python /tmp/ltx24/ref_decoder.py
"""
import math

import torch
import torch.nn.functional as F


def rms(x, w, eps=1e-6):
    return F.rms_norm(x, (x.shape[-1],), weight=w.to(x.dtype), eps=eps)


def rope_split(hd):
    dt = (hd // 4) // 2 * 2
    dhw = (hd - dt) // 2
    if dhw % 2:
        dt -= 2
        dhw = (hd - dt) // 2
    return dt, dhw, dhw


def inv_freq(d, base=10000.0):
    e = torch.arange(0, d, 2, dtype=torch.float64) / d
    return (1.0 / base ** e).float()


def apply_rope(x, pos_t, pos_h, pos_w):
    """x: (B, t, h, w, heads, hd); interleaved pairs; per-axis chunk [t | h | w]."""
    hd = x.shape[-1]
    parts, o = [], 0
    for d, pos, ax in zip(rope_split(hd), (pos_t, pos_h, pos_w), (1, 2, 3)):
        xs = x[..., o:o + d].float()
        o += d
        ang = pos.float()[:, None] * inv_freq(d).to(x.device)[None, :]
        shape = [1, 1, 1, 1, 1, d // 2]
        shape[ax] = pos.shape[0]
        c, s = ang.cos().reshape(shape), ang.sin().reshape(shape)
        e, od = xs[..., 0::2], xs[..., 1::2]
        parts.append(torch.stack([e * c - od * s, e * s + od * c], -1).reshape(xs.shape))
    return torch.cat(parts, -1).to(x.dtype)


def win_start(i, k, L):
    """NATTEN window start for query index tensor i on an axis of length L (kernel clamped to L)."""
    k = min(k, L)
    return torch.clamp(i - k // 2, 0, L - k), k


def na_attention(p, pre, q_frames, slab, grid_T, kernel, hd):
    """Neighborhood attention for query frames q_frames=(a,b) of a clip of grid_T frames.
    pre: normed/modulated input for the key slab frames slab=(s0,s1), shape (B, s1-s0, H, W, C).
    Returns attention output (after proj) for frames [a, b)."""
    B, ts, H, W, C = pre.shape
    heads = C // hd
    s0, s1 = slab
    a, b = q_frames
    qkv = pre @ p["attn.qkv.weight"].t().to(pre.dtype) + p["attn.qkv.bias"].to(pre.dtype)
    q, k, v = qkv.reshape(B, ts, H, W, 3, heads, hd).unbind(4)
    q = rms(q, p["attn.q_norm.weight"]) * hd ** -0.5
    k = rms(k, p["attn.k_norm.weight"])
    pt = torch.arange(s0, s1)  # global positions (relative rope: any origin works)
    ph, pw = torch.arange(H), torch.arange(W)
    q = apply_rope(q, pt, ph, pw)[:, a - s0:b - s0]
    k = apply_rope(k, pt, ph, pw)
    # window mask in global coordinates
    qt = torch.arange(a, b)
    st, kt = win_start(qt, kernel[0], grid_T)
    assert (st >= s0).all() and (st + kt <= s1).all(), "slab too small"
    kt_idx = torch.arange(s0, s1)
    mt = (kt_idx[None] >= st[:, None]) & (kt_idx[None] < st[:, None] + kt)
    sh, kh = win_start(ph, kernel[1], H)
    mh = (ph[None] >= sh[:, None]) & (ph[None] < sh[:, None] + kh)
    sw, kw = win_start(pw, kernel[2], W)
    mw = (pw[None] >= sw[:, None]) & (pw[None] < sw[:, None] + kw)
    mask = (mt[:, None, None, :, None, None] & mh[None, :, None, None, :, None]
            & mw[None, None, :, None, None, :]).reshape((b - a) * H * W, ts * H * W)
    qf = q.reshape(B, -1, heads, hd).transpose(1, 2)
    kf = k.reshape(B, -1, heads, hd).transpose(1, 2)
    vf = v.reshape(B, -1, heads, hd).transpose(1, 2)
    o = F.scaled_dot_product_attention(qf, kf, vf, attn_mask=mask, scale=1.0)
    o = o.transpose(1, 2).reshape(B, b - a, H, W, C)
    return o @ p["attn.proj.weight"].t().to(o.dtype) + p["attn.proj.bias"].to(o.dtype)


def swiglu(p, x):
    g = x @ p["mlp.w_gate.weight"].t().to(x.dtype)
    u = x @ p["mlp.w_up.weight"].t().to(x.dtype)
    return (F.silu(g) * u) @ p["mlp.w_down.weight"].t().to(x.dtype)


def run_block(p, x, kernel, hd, chunk=None, ctx=None, mod=None):
    """One NABlock (mod=None) or DiffusionNABlock. x: (B, T, H, W, C) whole clip -> new tensor."""
    T = x.shape[1]
    if ctx is not None:
        x = x + (ctx @ p["context_proj.weight"].t().to(x.dtype) + p["context_proj.bias"].to(x.dtype))
    if mod is not None:
        sc_msa, sh_msa, _, sc_mlp, sh_mlp, _, _ = [mod[i] + p["scale_shift_table"][i].to(x.dtype).view(1, 1, 1, 1, -1)
                                                   for i in range(7)]
        pre1 = lambda s: rms(s, p["norm1.weight"]) * (1 + sc_msa) + sh_msa  # noqa: E731
        pre2 = lambda s: rms(s, p["norm2.weight"]) * (1 + sc_mlp) + sh_mlp  # noqa: E731
    else:
        pre1 = lambda s: rms(s, p["norm1.weight"])  # noqa: E731
        pre2 = lambda s: rms(s, p["norm2.weight"])  # noqa: E731
    out = torch.empty_like(x)
    step = chunk or T
    r, kt = kernel[0] // 2, min(kernel[0], T)
    for a in range(0, T, step):
        b = min(T, a + step)
        s0 = max(0, min(a - r, T - kt))
        s1 = min(T, max(b + r, kt))
        h = x[:, a:b] + na_attention(p, pre1(x[:, s0:s1]), (a, b), (s0, s1), T, kernel, hd)
        out[:, a:b] = h + swiglu(p, pre2(h))
    return out


def sub(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def timestep_embedding(t, dim=256):
    half = dim // 2
    ex = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    e = t[:, None].float() * ex[None]
    e = torch.cat([e.sin(), e.cos()], -1)
    return torch.cat([e[:, half:], e[:, :half]], -1)  # flip_sin_to_cos -> [cos, sin]


def decode(sd, cfg, z_norm, noise, chunk=None, steps=1, out_type="x0"):
    """sd: host-layout state dict of CausalDiffusionVAE (decoder.* + per_channel_statistics.*)."""
    d = sub(sd, "decoder.")
    hd, P = cfg["head_dim"], cfg["patch_size"]
    dt = z_norm.dtype
    z = z_norm * sd["per_channel_statistics.std-of-means"].view(1, -1, 1, 1, 1).to(dt) \
        + sd["per_channel_statistics.mean-of-means"].view(1, -1, 1, 1, 1).to(dt)
    npad = (cfg["stage_kernels"][0][0] // 2) * 2
    z = torch.cat([z, z[:, :, -1:].expand(-1, -1, npad, -1, -1)], 2)
    x = z.permute(0, 2, 3, 4, 1) @ d["conv_in.weight"].t().to(dt) + d["conv_in.bias"].to(dt)
    t_up = 1
    for si, (stride, red) in enumerate(cfg["upsamples"]):
        for bi in range(cfg["stage_depths"][si]):
            x = run_block(sub(d, f"det_stages.{si}.{bi}."), x, cfg["stage_kernels"][si], hd, chunk)
        w, bb = d[f"upsamples.{si}.proj.weight"].to(dt), d[f"upsamples.{si}.proj.bias"].to(dt)
        B, T, H, W, C = x.shape
        p1, p2, p3 = stride
        co = w.shape[0] // (p1 * p2 * p3)
        y = (x @ w.t() + bb).reshape(B, T, H, W, co, p1, p2, p3).permute(0, 1, 5, 2, 6, 3, 7, 4)
        x = y.reshape(B, T * p1, H * p2, W * p3, co)
        if p1 == 2:
            x = x[:, 1:]
        t_up *= p1
    ctx = x[:, :x.shape[1] - npad * t_up]
    # stage 5
    B, T5, H5, W5, C5 = ctx.shape
    ts = torch.linspace(1.0, 1.0 / steps, steps)
    x_t = noise
    for i in range(steps):
        temb = timestep_embedding(cfg["timestep_scale_multiplier"] * ts[i].expand(B)).to(dt)
        temb = F.silu(temb @ d["t_embedder.mlp.0.weight"].t().to(dt) + d["t_embedder.mlp.0.bias"].to(dt))
        temb = temb @ d["t_embedder.mlp.2.weight"].t().to(dt) + d["t_embedder.mlp.2.bias"].to(dt)
        mod = F.silu(temb) @ d["shared_adaln.proj.weight"].t().to(dt) + d["shared_adaln.proj.bias"].to(dt)
        mod = [c[:, None, None, None, :] for c in mod.chunk(7, -1)]
        # patchify: b c f (h q) (w r) -> b f h w (c r q)
        Bn, Cn, Fn, Hn, Wn = x_t.shape
        h = x_t.reshape(Bn, Cn, Fn, Hn // P, P, Wn // P, P).permute(0, 2, 3, 5, 1, 6, 4).reshape(Bn, Fn, Hn // P, Wn // P, Cn * P * P)
        h = h @ d["conv_in_x_t.weight"].t().to(dt) + d["conv_in_x_t.bias"].to(dt)
        for bi in range(cfg["stage_depths"][-1]):
            h = run_block(sub(d, f"diff_blocks.{bi}."), h, cfg["stage5_kernel"], hd, chunk, ctx=ctx, mod=mod)
        h = rms(h, d["norm_out.weight"]) @ d["conv_out.weight"].t().to(dt) + d["conv_out.bias"].to(dt)
        # unpatchify: b f h w (c r q) -> b c f (h q) (w r)
        out = h.reshape(Bn, Fn, Hn // P, Wn // P, Cn, P, P).permute(0, 4, 1, 2, 6, 3, 5).reshape(Bn, Cn, Fn, Hn, Wn)
        if out_type == "x0":
            if i == steps - 1:
                return out
            vel = (x_t.float() - out.float()) / ts[i]
        else:
            vel = out.float()
            if i == steps - 1:
                return (x_t.float() - ts[i] * vel).to(dt)
        t_next = ts[i + 1] if i + 1 < steps else torch.tensor(0.0)
        x_t = (x_t.float() - (ts[i] - t_next) * vel).to(dt)
    return x_t


if __name__ == "__main__":
    import sys
    sys.path.insert(0, "/tmp/ltx24")
    import compare as C  # noqa: E402  (sets up comfy import + tiny config)
    import rf_probe_cfg as R  # noqa: E402

    for label, mk in (("compare.py tiny config", C), ("production temporal structure (rf config)", R)):
        host, cfg_all, shape = mk.build()
        cfg = cfg_all["decoder"]
        sd = host.state_dict()
        torch.manual_seed(5)
        z = torch.randn(*shape)
        with torch.no_grad():
            out_h = host.decode(z)  # seed-0 CPU generator inside
            noise = torch.randn((1, 3, 8 * shape[2] - 7, 32 * shape[3], 32 * shape[4]),
                                generator=torch.Generator().manual_seed(0))
            for chunk in (None, 1, 3, 7):
                out_r = decode(sd, cfg, z, noise, chunk=chunk)
                print(f"[{label}] ref(chunk={chunk}) vs host: max|diff|={(out_r - out_h).abs().max().item():.3g} "
                      f"(|out|max={out_h.abs().max().item():.3g})")
