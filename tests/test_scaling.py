"""SPEC section 2: the [-1, 1] scaling with one global max and min of the training clips, in float32 as the
original computes it."""

import numpy as np
import pytest

from aegan.core.errors import AeganError
from aegan.data.segments import minmax, scale


def test_scaling_maps_train_range_to_unit_interval():
    rng = np.random.default_rng(0)
    train = rng.uniform(-80, 20, (5, 8, 30)).astype(np.float32)
    vmax, vmin = minmax(train)
    assert vmax == train.max() and vmin == train.min() and isinstance(vmax, np.float32)
    s = scale(train, vmax, vmin)
    assert s.dtype == np.float32 and s.max() == pytest.approx(1) and s.min() == pytest.approx(-1)
    # the original's float32 arithmetic, step by step (a float64 midpoint moves some values by one ulp)
    mid, half = (vmax + vmin) / 2, (vmax - vmin) / 2
    assert np.array_equal(s, (train - mid) / half)
    # test data uses the training max/min, so it can leave [-1, 1]
    assert scale(np.array([[[vmax + (vmax - vmin) / 2]]]), vmax, vmin).item() == pytest.approx(2)
    with pytest.raises(AeganError, match="silent"):
        scale(train, 1.0, 1.0)


def test_float64_arithmetic_would_differ():
    """Why float32 matters: computed in float64 and rounded once, some values land one ulp away."""
    rng = np.random.default_rng(1)
    train = rng.uniform(-97.3, 13.1, (4, 16, 64)).astype(np.float32)
    vmax, vmin = minmax(train)
    ours = scale(train, vmax, vmin)
    mid64, half64 = (float(vmax) + float(vmin)) / 2, (float(vmax) - float(vmin)) / 2
    other = ((train.astype(np.float64) - mid64) / half64).astype(np.float32)
    assert not np.array_equal(ours, other) and np.abs(ours - other).max() < 1e-6
