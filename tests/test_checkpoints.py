"""Loading: both key layouts, widths read from shapes, and every way a file can be wrong."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from framestream.vae_core.streaming import engine
from framestream.vae_core import build_wan, load_vae
from framestream.vae_core.models.wan.checkpoints import diffusers_to_original, infer_wan_config
from framestream.vae_core.errors import FrameStreamError
from framestream.vae_core.models.registry import vae_keys

from oracle import WAN21_SMALL, WAN22_SMALL, diffusers_wan


def test_original_layout_is_what_diffusers_own_converter_reads(wan21_pair):
    """Our diffusers->original renaming, fed to diffusers' original->diffusers converter, gives the start back."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    ref, _ = wan21_pair
    original = diffusers_to_original(ref.state_dict())
    assert "decoder.middle.0.residual.0.gamma" in original and "conv2.weight" in original
    back = convert_wan_vae_to_diffusers(original)
    assert set(back) == set(ref.state_dict())
    assert all(torch.equal(back[k], v) for k, v in ref.state_dict().items())


def test_wan22_original_layout_has_the_reference_key_names(wan22_pair):
    """Key names of Wan2.2's vae2_2.py (nested down/up blocks, shortcuts without weights)."""
    _, ours = wan22_pair
    keys = set(ours.state_dict())
    for key in ["encoder.conv1.weight", "encoder.downsamples.0.downsamples.0.residual.0.gamma",
                "encoder.downsamples.0.downsamples.2.resample.1.weight",
                "encoder.downsamples.1.downsamples.2.time_conv.weight", "encoder.middle.1.to_qkv.weight",
                "encoder.head.2.weight", "conv1.weight", "conv2.weight",
                "decoder.upsamples.0.upsamples.0.residual.2.weight", "decoder.upsamples.0.upsamples.3.time_conv.weight",
                "decoder.upsamples.2.upsamples.3.resample.1.weight", "decoder.head.2.weight"]:
        assert key in keys, key
    assert ours.state_dict()["encoder.conv1.weight"].shape[1] == 12
    assert not any("avg_shortcut" in k for k in keys)


@pytest.mark.parametrize("pair, version", [("wan21_pair", "wan2.1"), ("wan22_pair", "wan2.2")])
def test_every_key_and_shape_equals_the_hosts_module(pair, version, request):
    """Keys and shapes of ComfyUI's own WanVAE modules at the same widths (tests/data, recorded from the host)."""
    with open(os.path.join(os.path.dirname(__file__), "data", "comfy_wan_vae_keys.json")) as f:
        host_keys = json.load(f)[version]
    ours = {k: list(v.shape) for k, v in request.getfixturevalue(pair)[1].state_dict().items()}
    assert ours == host_keys


@pytest.mark.parametrize("config, version, z, ratio", [(WAN21_SMALL, "2.1", 16, 8), (WAN22_SMALL, "2.2", 48, 16)])
def test_config_read_from_shapes(config, version, z, ratio):
    ours = build_wan(diffusers_wan(config).state_dict())
    cfg = infer_wan_config(ours.state_dict())
    assert (cfg.version, cfg.z_dim, cfg.dim, cfg.dim_mult, cfg.num_res_blocks) == (version, z, 8, (1, 2, 4, 4), 2)
    assert cfg.temporal_down == (False, True, True)
    assert (ours.latent_channels, ours.spatial_ratio, ours.temporal_ratio) == (z, ratio, 4)


def test_other_depths_and_widths_load_too():
    """Widths and depths come from the tensors, not from a table of known models."""
    ref = diffusers_wan(dict(base_dim=4, z_dim=16, dim_mult=[1, 2, 3, 3], num_res_blocks=1))
    ours = build_wan(ref.state_dict())
    assert (ours.cfg.dim, ours.cfg.dim_mult, ours.cfg.num_res_blocks) == (4, (1, 2, 3, 3), 1)
    z = torch.randn(1, 16, 2, 2, 2)
    with torch.no_grad():
        expected = ref.decode(z).sample
    got = engine.decode(ours, z)
    assert (got - ((expected + 1) / 2).permute(0, 2, 3, 4, 1).reshape(got.shape)).abs().max() < 1e-4


@pytest.mark.parametrize("pair", ["wan21_pair", "wan22_pair"])
def test_both_layouts_load_from_files_and_decode_identically(pair, request, tmp_path):
    ref, ours = request.getfixturevalue(pair)
    save_file(ref.state_dict(), tmp_path / "diffusers.safetensors")
    save_file({k: v.contiguous() for k, v in ours.state_dict().items()}, tmp_path / "original.safetensors")
    z = torch.randn(1, ours.latent_channels, 2, 2, 2)
    a = engine.decode(load_vae(str(tmp_path / "diffusers.safetensors")), z)
    b = engine.decode(load_vae(str(tmp_path / "original.safetensors")), z)
    assert torch.equal(a, b)
    assert torch.equal(a, engine.decode(ours, z))


def test_prefixed_keys_load(wan21_pair, tmp_path):
    _, ours = wan21_pair
    save_file({f"first_stage_model.{k}": v.contiguous() for k, v in ours.state_dict().items()}, tmp_path / "p.safetensors")
    assert load_vae(str(tmp_path / "p.safetensors")).cfg == ours.cfg


def test_the_vae_of_a_whole_model_checkpoint_loads_alone(wan21_pair, tmp_path):
    """LTX-2 and SVD ship their VAE inside the diffusion model's file: only the VAE's tensors are read."""
    _, ours = wan21_pair
    tensors = {f"vae.{k}": v.contiguous() for k, v in ours.state_dict().items()}
    others = {"model.diffusion_model.proj.weight": torch.zeros(4, 4), "audio_vae.decoder.conv.weight": torch.zeros(2)}
    save_file({**tensors, **others}, tmp_path / "whole.safetensors")
    assert vae_keys([*tensors, *others]) == list(tensors)
    assert load_vae(str(tmp_path / "whole.safetensors")).cfg == ours.cfg


def test_load_in_working_precision(wan21_pair, tmp_path):
    _, ours = wan21_pair
    save_file({k: v.contiguous() for k, v in ours.state_dict().items()}, tmp_path / "v.safetensors")
    vae = load_vae(str(tmp_path / "v.safetensors"), dtype=torch.bfloat16)
    assert {p.dtype for p in vae.parameters()} == {torch.bfloat16}


# --- bad files ------------------------------------------------------------------------------------------------


def test_missing_file():
    with pytest.raises(FrameStreamError, match="file not found"):
        load_vae("/nonexistent/wan_2.1_vae.safetensors")


@pytest.mark.parametrize("name", ["vae.pt", "vae.ckpt", "vae.pth", "vae.safetensors"])
def test_pickle_checkpoint_refused(name, wan21_pair, tmp_path):
    _, ours = wan21_pair
    torch.save(ours.state_dict(), tmp_path / name)  # a pickle, whatever its name says
    with pytest.raises(FrameStreamError, match="pickle"):
        load_vae(str(tmp_path / name))


def test_truncated_safetensors(wan21_pair, tmp_path):
    _, ours = wan21_pair
    path = tmp_path / "v.safetensors"
    save_file({k: v.contiguous() for k, v in ours.state_dict().items()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FrameStreamError, match="truncated or corrupt"):
        load_vae(str(path))


def test_corrupt_header(tmp_path):
    path = tmp_path / "v.safetensors"
    path.write_bytes((200).to_bytes(8, "little") + b"{not json" + b" " * 300)
    with pytest.raises(FrameStreamError, match="truncated or corrupt"):
        load_vae(str(path))


def test_the_diffusion_decoder_is_not_read_as_ltx2(tmp_path):
    """LTX-2's diffusion decoder reads LTX-2 latents, but it is another model: its file is called what it is."""
    save_file({"decoder.conv_in_x_t.weight": torch.ones(4, 4)}, tmp_path / "ltx25.safetensors")
    with pytest.raises(FrameStreamError, match=r"ltx25.safetensors looks like an LTX-2 diffusion decoder "
                                               r"\(LTX-2.4 / 2.5\) but is incomplete"):
        load_vae(str(tmp_path / "ltx25.safetensors"))


@pytest.mark.parametrize("key, what", [
    ("student.dconv_encoder.proj_out.weight", r"Mage-VAE \(a one-step diffusion codec\)"),
    ("decoder.unpatcher3d.wavelets", "Cosmos tokenizer"),
    ("pre_block.attn.zero_k_bias", "MiniMax H3 audio VAE"),
    ("decoder.layers.3.transformers.0.pre_norm.alpha", "Stable Audio 3 VAE"),
    ("vocoder.activation_post.downsample.lowpass.filter", "MMAudio VAE"),
])
def test_the_2026_models_not_supported_are_named(tmp_path, key, what):
    """Files the host reads by these keys (its comfy/sd.py): named, not called unrecognised or misread as a family
    FrameStream reads (the keys beside them are a VAE's usual ones, which some family might claim)."""
    sd = {key: torch.ones(4, 4), "decoder.conv_in.weight": torch.ones(8, 4, 3, 3), "encoder.conv_in.weight":
          torch.ones(8, 3, 3, 3)}
    save_file(sd, tmp_path / "model.safetensors")
    with pytest.raises(FrameStreamError, match=f"model.safetensors is not a VAE FrameStream supports: it looks like the "
                                               f"{what};"):
        load_vae(str(tmp_path / "model.safetensors"))


def test_unrecognised_file_lists_the_registered_families(tmp_path):
    from framestream.vae_core.models.registry import FAMILIES

    save_file({"net.0.weight": torch.ones(2, 2)}, tmp_path / "other.safetensors")
    with pytest.raises(FrameStreamError, match="other.safetensors is not a VAE FrameStream recognises "
                                               r"\(first keys: net.0.weight\)") as err:
        load_vae(str(tmp_path / "other.safetensors"))
    assert all(family.name in str(err.value) for family in FAMILIES)


def test_incomplete_wan_checkpoint(wan21_pair, tmp_path):
    _, ours = wan21_pair
    sd = {k: v.contiguous() for k, v in ours.state_dict().items() if not k.startswith("decoder.upsamples.3.")}
    save_file(sd, tmp_path / "v.safetensors")
    with pytest.raises(FrameStreamError, match="does not match its architecture"):
        load_vae(str(tmp_path / "v.safetensors"))


def test_a_later_release_sharing_key_names_wins_without_either_reader_knowing_the_other():
    """LTX-2's files have LTX-Video 0.9.5's key names and shapes: both families recognise them, LTX-2 knows them."""
    from framestream.vae_core.models import ltx, ltx2
    from framestream.vae_core.models.registry import family_of

    from oracle import SMALL_20, diffusers_ltx2

    sd = diffusers_ltx2(SMALL_20).state_dict()
    assert ltx.FAMILY.recognises(sd) and ltx2.FAMILY.recognises(sd)
    assert family_of(sd) is ltx2.FAMILY
