import sys; sys.argv=[sys.argv[0],'--cpu']; sys.path.insert(0,'/work/hosts/comfy-0.33.0')
import comfy.options; comfy.options.enable_args_parsing()
import torch, collections
import comfy.ldm.lightricks.vae.na_diffusion_decoder as hm
from diffusers import LTX2VideoDiffusionDecoderModel
with torch.device('meta'):
    h = hm.NADiffusionDecoder()
    d = LTX2VideoDiffusionDecoderModel()
hk = {k: tuple(v.shape) for k, v in h.state_dict().items()}
dk = {k: tuple(v.shape) for k, v in d.state_dict().items()}
print('host decoder params', sum(v.numel() for v in h.parameters())/1e6, 'M; keys', len(hk))
print('diffusers params', sum(v.numel() for v in d.parameters())/1e6, 'M; keys', len(dk))
groups = collections.OrderedDict()
for k, s in hk.items():
    parts = k.split('.')
    g = '.'.join(parts[:2]) if parts[0] in ('det_stages','upsamples','diff_blocks') else parts[0]
    groups.setdefault(g, 0); groups[g] += torch.Size(s).numel()
for g, n in groups.items(): print(f'  {g}: {n/1e6:.2f}M')
# one example block of each kind
for pre in ('det_stages.0.0.', 'upsamples.0.', 'upsamples.1.', 'upsamples.2.', 'upsamples.3.', 'det_stages.3.0.', 'diff_blocks.0.'):
    print(pre); [print('   ', k, s) for k, s in hk.items() if k.startswith(pre)]
for k, s in hk.items():
    if not k.startswith(('det_stages', 'upsamples', 'diff_blocks')): print(k, s)
print('--- diffusers keys for det_stages.0.0 / t_embedder / top-level')
for k, s in dk.items():
    if k.startswith('decoder.det_stages.0.0.') or 't_embedder' in k or not k.startswith('decoder.'): print('   ', k, s)
