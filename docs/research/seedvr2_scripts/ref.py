"""Pure-torch SeedVR2 VAE reference written from the spec (docs/research/seedvr2_vae.md).
Reads the host state-dict layout (encoder.* / decoder.*). Two modes:
  whole clip:  decode(sd, z) / encode(sd, x)
  streaming:   decode(sd, z, chunk=N) / encode(sd, x, chunk=N): N latent (decode) or pixel (encode)
               frames per step, every causal conv carries its own tail of un-consumed input frames.
z is the ComfyUI latent (scaled by 0.9152); x is in [-1, 1]. (B, C, T, H, W), fp32."""
import torch
import torch.nn.functional as F

SCALE, GROUPS, EPS = 0.9152, 32, 1e-6


class CausalConv:
    """3D conv, causal in time: the clip is front-padded with 2*pad_t copies of frame 0 (replicate),
    spatial zero padding. State = the padded input frames not yet consumed by an output."""
    def __init__(self, sd, pre, stride=(1, 1, 1), pad_hw=None):
        self.w, self.b = sd[pre + ".weight"], sd[pre + ".bias"]
        self.k = self.w.shape[2]
        self.s = stride
        p = self.w.shape[3] // 2 if pad_hw is None else pad_hw
        self.pad_hw = p
        self.buf = None

    def __call__(self, x):
        if self.buf is None:                              # first chunk of the clip
            if self.k > 1:
                x = torch.cat([x[:, :, :1]] * (self.k - 1) + [x], 2)   # k=3 -> 2 head copies
            self.buf = x
        else:
            self.buf = torch.cat([self.buf, x], 2)
        L = self.buf.shape[2]
        n = (L - self.k) // self.s[0] + 1 if L >= self.k else 0
        if n <= 0:
            return None
        inp = self.buf[:, :, : (n - 1) * self.s[0] + self.k]
        self.buf = self.buf[:, :, n * self.s[0]:]
        return F.conv3d(inp, self.w, self.b, stride=self.s, padding=(0, self.pad_hw, self.pad_hw))


def gn(x, sd, pre):  # GroupNorm(32, eps 1e-6) per frame: statistics over (C/32, H, W) of one frame
    b, c, t, h, w = x.shape
    y = F.group_norm(x.transpose(1, 2).reshape(b * t, c, h, w), GROUPS, sd[pre + ".weight"], sd[pre + ".bias"], EPS)
    return y.reshape(b, t, c, h, w).transpose(1, 2)


class Resnet:
    def __init__(self, sd, pre):
        self.sd, self.pre = sd, pre
        self.c1, self.c2 = CausalConv(sd, pre + ".conv1"), CausalConv(sd, pre + ".conv2")
        self.sc = sd.get(pre + ".conv_shortcut.weight")

    def __call__(self, x):
        h = self.c1(F.silu(gn(x, self.sd, self.pre + ".norm1")))
        h = self.c2(F.silu(gn(h, self.sd, self.pre + ".norm2")))
        if self.sc is not None:
            x = F.conv3d(x, self.sc, self.sd[self.pre + ".conv_shortcut.bias"])
        return x + h


def attn(x, sd, pre):  # per frame, one head of width C, over all H*W tokens of that frame
    b, c, t, h, w = x.shape
    r = x.transpose(1, 2).reshape(b * t, c, h * w)
    y = F.group_norm(r, GROUPS, sd[pre + ".group_norm.weight"], sd[pre + ".group_norm.bias"], EPS).transpose(1, 2)
    q, k, v = (F.linear(y, sd[f"{pre}.to_{n}.weight"], sd[f"{pre}.to_{n}.bias"])[:, None] for n in "qkv")
    o = F.scaled_dot_product_attention(q, k, v)[:, 0]
    o = F.linear(o, sd[pre + ".to_out.0.weight"], sd[pre + ".to_out.0.bias"]).transpose(1, 2)
    return (r + o).reshape(b, t, c, h, w).transpose(1, 2)


class Mid:
    def __init__(self, sd, pre):
        self.sd, self.pre = sd, pre
        self.r0, self.r1 = Resnet(sd, pre + ".resnets.0"), Resnet(sd, pre + ".resnets.1")

    def __call__(self, x):
        return self.r1(attn(self.r0(x), self.sd, self.pre + ".attentions.0"))


class Upsample:
    def __init__(self, sd, pre, temporal):
        self.sd, self.pre, self.tr = sd, pre, 2 if temporal else 1
        self.conv = CausalConv(sd, pre + ".conv")
        self.first = True

    def __call__(self, x):
        x = F.conv3d(x, self.sd[self.pre + ".upscale_conv.weight"], self.sd[self.pre + ".upscale_conv.bias"])
        b, cc, f, h, w = x.shape
        c = cc // (4 * self.tr)
        # channel index = ((dh*2 + dw)*tr + dt)*c + ci ; out frame f*tr+dt, row h*2+dh, col w*2+dw
        x = x.view(b, 2, 2, self.tr, c, f, h, w).permute(0, 4, 5, 3, 6, 1, 7, 2).reshape(b, c, f * self.tr, h * 2, w * 2)
        if self.tr == 2 and self.first:
            x = torch.cat([x[:, :, :1], x[:, :, 2:]], 2)  # the clip's first latent frame yields 1 frame, not 2
        self.first = False
        return self.conv(x)


class Decoder:
    def __init__(self, sd):
        p = "decoder"
        self.conv_in, self.mid = CausalConv(sd, p + ".conv_in"), Mid(sd, p + ".mid_block")
        self.blocks = []
        for i in range(4):
            rs = [Resnet(sd, f"{p}.up_blocks.{i}.resnets.{j}") for j in range(3)]
            up = Upsample(sd, f"{p}.up_blocks.{i}.upsamplers.0", temporal=i < 2) if i < 3 else None
            self.blocks.append((rs, up))
        self.sd, self.conv_out = sd, CausalConv(sd, p + ".conv_out")

    def __call__(self, z):
        x = self.mid(self.conv_in(z))
        for rs, up in self.blocks:
            for r in rs:
                x = r(x)
            if up is not None:
                x = up(x)
        return self.conv_out(F.silu(gn(x, self.sd, "decoder.conv_norm_out")))


class Downsample:
    def __init__(self, sd, pre, temporal):
        self.conv = CausalConv(sd, pre + ".conv", stride=(2 if temporal else 1, 2, 2), pad_hw=0)

    def __call__(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # zero pad right/bottom, 3x3 stride 2: H -> floor(H/2)


class Encoder:
    def __init__(self, sd):
        p = "encoder"
        self.conv_in = CausalConv(sd, p + ".conv_in")
        self.blocks = []
        for i in range(4):
            rs = [Resnet(sd, f"{p}.down_blocks.{i}.resnets.{j}") for j in range(2)]
            dn = Downsample(sd, f"{p}.down_blocks.{i}.downsamplers.0", temporal=i in (1, 2)) if i < 3 else None
            self.blocks.append((rs, dn))
        self.mid, self.sd, self.conv_out = Mid(sd, p + ".mid_block"), sd, CausalConv(sd, p + ".conv_out")

    def __call__(self, x):
        x = self.conv_in(x)
        for rs, dn in self.blocks:
            for r in rs:
                x = r(x)
            if dn is not None:
                x = dn(x)
                if x is None:  # a stride-2 conv may need one more frame before it can emit
                    return None
        x = self.mid(x)
        return self.conv_out(F.silu(gn(x, self.sd, "encoder.conv_norm_out")))


def decode(sd, z, chunk=None):
    dec = Decoder(sd)
    z = z / SCALE
    if chunk is None:
        return dec(z)
    return torch.cat([dec(z[:, :, i:i + chunk]) for i in range(0, z.shape[2], chunk)], 2)


def encode(sd, x, chunk=None):
    enc = Encoder(sd)
    if chunk is None:
        outs = [enc(x)]
    else:
        outs = [enc(x[:, :, i:i + chunk]) for i in range(0, x.shape[2], chunk)]
    h = torch.cat([o for o in outs if o is not None], 2)
    return h[:, :16] * SCALE  # posterior mode (mean), times the scaling factor
