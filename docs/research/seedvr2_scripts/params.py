"""Full-size SeedVR2 VAE on the meta device: parameter count, key patterns, shapes.
    /work/hosts/venv33/bin/python docs/research/seedvr2_scripts/params.py"""
import sys; sys.argv = [sys.argv[0], '--cpu']; sys.path.insert(0, '/work/hosts/comfy-0.33.0')
import comfy.options; comfy.options.enable_args_parsing()
import re, collections, torch
import comfy.ldm.seedvr.vae as V
with torch.device('meta'):
    m = V.VideoAutoencoderKLWrapper()
sd = m.state_dict()
n = lambda pre: sum(v.numel() for k, v in sd.items() if k.startswith(pre))
print('params total %.3fM  encoder %.3fM  decoder %.3fM  keys %d' % (n('')/1e6, n('encoder.')/1e6, n('decoder.')/1e6, len(sd)))
pats = collections.OrderedDict()
for k, v in sd.items():
    p = re.sub(r'\.\d+\.', '.N.', re.sub(r'\.\d+\.', '.N.', k))
    pats.setdefault(p, []).append((k, tuple(v.shape)))
for p, l in pats.items():
    print(f'{len(l):3d}  {p:70s} e.g. {l[0][1]}')
print('--- per-block shapes')
for k, v in sd.items():
    if k.endswith('weight') and ('conv' in k or 'to_' in k or 'upscale' in k) and ('resnets.0' in k or 'resnets' not in k):
        print(k, tuple(v.shape))
