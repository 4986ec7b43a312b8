"""SPEC section 7: the frame averaging that rebuilds a full-length spectrogram from overlapping segments."""

import pytest
import torch

from aegan.features import segment_view
from aegan.localization import localization_map, overlap_average, to_unit


@pytest.mark.parametrize("frames, width, hop", [(30, 8, 1), (31, 8, 3), (16, 16, 1)])
def test_overlap_average_equals_direct_loop(frames, width, hop):
    torch.manual_seed(0)
    segs = torch.randn((frames - width) // hop + 1, 5, width)
    got = overlap_average(segs, hop)
    t = (segs.shape[0] - 1) * hop + width
    total, count = torch.zeros(5, t), torch.zeros(t)
    for i, seg in enumerate(segs):
        total[:, i * hop:i * hop + width] += seg
        count[i * hop:i * hop + width] += 1
    torch.testing.assert_close(got, total / count)


def test_segments_of_a_spectrogram_rebuild_it_exactly():
    spec = torch.randn(6, 40)
    segs = segment_view(spec[None], 16, 2)[0]
    torch.testing.assert_close(overlap_average(segs, 2), spec[:, : (segs.shape[0] - 1) * 2 + 16])


def test_map_is_absolute_difference_in_unit_range():
    recon = torch.tensor([[-1.0, 0.0, 1.0]])
    normal = torch.tensor([[1.0, 0.0, -1.0, 0.5]])  # longer than the rebuilt clip: cut to length
    torch.testing.assert_close(localization_map(recon, normal), torch.tensor([[1.0, 0.0, 1.0]]))
    assert to_unit(torch.tensor(-1.0)) == 0 and to_unit(torch.tensor(1.0)) == 1
