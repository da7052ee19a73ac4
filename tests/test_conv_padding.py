"""Replicated spatial edges made in the copy that joins a conv's carried frames (one copy where F.pad made a
second): the same values as padding the joined span, in either memory layout, streamed or whole."""

import pytest
import torch
import torch.nn.functional as F

from framestream.vae_core.streaming.conv import CausalConv3d
from framestream.vae_core.streaming.state import StreamState, channels_last, join_frames


@pytest.mark.parametrize("edge_pad", [(1, 1), (2, 1), (0, 2), (3, 0)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_joined_frames_with_edges_equal_the_join_padded_by_replicating(edge_pad, layout):
    torch.manual_seed(0)
    like = torch.randn(1, 5, 3, 6, 7).to(memory_format=layout)
    parts = [torch.randn(1, 5, 2, 6, 7), like, like[:, :, -1:].expand(-1, -1, 2, -1, -1)]
    rows, columns = edge_pad
    expected = F.pad(torch.cat(parts, dim=2), (columns, columns, rows, rows, 0, 0), mode="replicate")
    joined = join_frames(parts, like=like, edge_pad=edge_pad)
    assert torch.equal(joined, expected)
    assert channels_last(joined) == (layout == torch.channels_last_3d)


def _by_hand(conv: CausalConv3d, clip: torch.Tensor) -> torch.Tensor:
    """The whole clip: two copies of the first frame in front, edges replicated, then a plain conv."""
    front = clip[:, :, :1].expand(-1, -1, conv.time_padding, -1, -1)
    padded = F.pad(torch.cat([front, clip], dim=2), (1, 1, 1, 1, 0, 0), mode="replicate")
    return F.conv3d(padded, conv.weight, conv.bias, conv.stride)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last_3d])
def test_a_replicate_padded_causal_conv_streamed_in_pieces_equals_the_whole_clip_by_hand(stride, layout):
    torch.manual_seed(1)
    conv = CausalConv3d(4, 6, 3, stride=(stride, 1, 1) if stride > 1 else 1, padding=1, time_fill="replicate",
                        spatial_mode="replicate").eval()
    clip = torch.randn(1, 4, 9, 5, 6).to(memory_format=layout)
    expected = _by_hand(conv, clip)
    state, outputs = StreamState(expected_frames=clip.shape[2]), []
    with torch.no_grad(), state.active():
        for start, stop in ((0, 1), (1, 4), (4, 5), (5, 9)):
            outputs.append(conv(clip[:, :, start:stop]))
            state.carries.commit()
    streamed = torch.cat(outputs, dim=2)
    assert streamed.shape == expected.shape
    torch.testing.assert_close(streamed, expected, rtol=0, atol=1e-5)
    with torch.no_grad():  # outside a stream: the whole clip in one call
        torch.testing.assert_close(conv(clip), expected, rtol=0, atol=1e-5)
