"""SPEC section 2: 128-frame segments sliding by graph_hop_f, and the shuffled training batches, drawn as the
original's DataLoader draws them."""

import torch

from aegan.data.segments import SegmentSampler, clip_segments, num_segments, segment_view


def test_313_frames_give_186_segments():
    assert num_segments(313, 128, 1) == 186
    assert num_segments(344, 128, 1) == 217  # DCASE 2020 ToyCar, 11 s
    assert num_segments(100, 128, 1) == 0
    specs = torch.arange(2 * 4 * 313, dtype=torch.float32).reshape(2, 4, 313)
    view = segment_view(specs, 128, 1)
    assert view.shape == (2, 186, 4, 128)
    assert torch.equal(view[1, 57], specs[1, :, 57:57 + 128])
    assert torch.equal(segment_view(specs, 128, 3)[0, 5], specs[0, :, 15:143])
    one = clip_segments(specs, 1, 128, 1, torch.device("cpu"))
    assert one.shape == (186, 1, 4, 128) and one.is_contiguous() and torch.equal(one[:, 0], view[1])


def test_sampler_draws_the_permutation_torchs_dataloader_draws():
    """The original shuffles with DataLoader(shuffle=True, drop_last=True): the same global generator state
    gives the same batches of segment numbers, and leaves the generator in the same state."""
    specs = torch.randn(3, 8, 20)
    s = SegmentSampler(specs, 8, 2, batch_size=5)
    assert s.total == 3 * 7 and len(s) == 4  # 21 segments, last incomplete batch dropped
    torch.manual_seed(3)
    loader = [b.tolist() for b in torch.utils.data.DataLoader(range(21), batch_size=5, shuffle=True, drop_last=True)]
    after = torch.get_rng_state()
    torch.manual_seed(3)
    batches = list(s.epoch())
    assert torch.equal(torch.get_rng_state(), after)
    view = segment_view(specs, 8, 2)
    for b, batch in enumerate(batches):
        want = torch.stack([view[i // 7, i % 7] for i in loader[b]]).unsqueeze(1)
        assert torch.equal(batch, want)
    assert not all(torch.equal(a, b) for a, b in zip(batches, s.epoch()))  # the next epoch: a new order


def test_each_rank_takes_its_slice_of_every_global_batch():
    specs = torch.randn(3, 8, 20)
    view = segment_view(specs, 8, 2)
    wide = SegmentSampler(specs, 8, 2, batch_size=6, rank=1, world=2)
    torch.manual_seed(3)
    order = wide.permutation()
    torch.manual_seed(3)
    batches = list(wide.epoch())
    assert len(batches) == 3  # 21 segments, 3 whole global batches of 6, rank 1's half of each
    for b, batch in enumerate(batches):
        assert torch.equal(batch[:, 0], torch.stack([view[i // 7, i % 7] for i in order[6 * b + 3:6 * b + 6].tolist()]))


def test_a_non_contiguous_input_gives_the_same_segments():
    t = torch.randn(3, 20, 8).transpose(1, 2)
    torch.manual_seed(0)
    a = list(SegmentSampler(t, 8, 2, 5).epoch())
    torch.manual_seed(0)
    b = list(SegmentSampler(t.contiguous(), 8, 2, 5).epoch())
    assert len(a) == len(b) == 4 and all(torch.equal(x, y) for x, y in zip(a, b))
