"""Real thick slices for the evaluation (``core.degradation.box_taps`` and ``thick_sampling``): the box weights
from their definition, exactness on lines, the mirrored ends by hand, shapes, and the ``thick`` degradation."""

from __future__ import annotations

import numpy as np
import pytest

from CTSliceSynthesisLib.core.degradation import DEGRADATIONS, box_taps, direct_sampling, thick_sampling
from CTSliceSynthesisLib.evaluation.scoring import simulate_thick


def overlap_weights(scale: int) -> np.ndarray:
    """The definition: a box of ``scale`` thin slices centred on one; thin slice i covers [i − ½, i + ½]; its
    weight is the length of its overlap with [−r/2, r/2], divided by r."""
    half = scale // 2 + 1
    offsets = np.arange(-half, half + 1)
    overlap = np.clip(np.minimum(offsets + 0.5, scale / 2) - np.maximum(offsets - 0.5, -scale / 2), 0, None)
    weights = overlap / scale
    return weights[weights > 0]


@pytest.mark.parametrize("scale, expected", [
    (1, [1.0]),
    (2, [0.25, 0.5, 0.25]),
    (3, [1 / 3, 1 / 3, 1 / 3]),
    (4, [1 / 8, 1 / 4, 1 / 4, 1 / 4, 1 / 8]),
])
def test_box_taps_by_hand(scale: int, expected) -> None:
    np.testing.assert_allclose(box_taps(scale), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 5, 6, 7, 8])
def test_box_taps_are_the_overlap_of_the_box_with_each_slice(scale: int) -> None:
    taps = box_taps(scale)
    assert len(taps) % 2 == 1  # centred on a slice
    assert taps.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(taps, overlap_weights(scale), rtol=0, atol=1e-12)
    np.testing.assert_allclose(taps, taps[::-1])


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_ramp_along_the_axis_survives_at_the_kept_slices(scale: int, axis: int) -> None:
    """Symmetric weights summing to 1 reproduce a line at their centre; at the ends the mirror bends the line,
    so only kept slices whose box lies inside the volume are compared."""
    shape = [5, 6, 7]
    shape[axis] = 4 * scale + 1
    positions = np.arange(shape[axis], dtype=np.float64).reshape([-1 if a == axis else 1 for a in range(3)])
    other = np.arange(np.prod(shape), dtype=np.float64).reshape(shape) % 5  # varies across the other axes only
    other = np.take(other, [0], axis=axis)
    volume = (37.5 * positions - 400.0 + 10.0 * other) * np.ones(shape)
    thick = thick_sampling(volume, scale, axis)
    direct = direct_sampling(volume, scale, axis)
    assert thick.shape == direct.shape and thick.dtype == np.float32
    inside = np.arange(1, thick.shape[axis] - 1)
    np.testing.assert_allclose(np.take(thick, inside, axis=axis), np.take(direct, inside, axis=axis), atol=1e-3)


def test_the_ends_are_mirrored() -> None:
    """0, 10, 20, 30, 40 with r = 2 (taps ¼ ½ ¼): at 0 the missing slice −1 is slice 1, so
    ¼·10 + ½·0 + ¼·10 = 5; at 2, 20; at 4, ¼·30 + ½·40 + ¼·30 = 35."""
    line = np.array([0.0, 10.0, 20.0, 30.0, 40.0])[None, :, None]
    np.testing.assert_allclose(thick_sampling(line, 2, axis=1).ravel(), [5.0, 20.0, 35.0], atol=1e-5)
    # r = 3 on 0…60 (taps ⅓ each): (10 + 0 + 10)/3 at 0, the mean of 20, 30, 40 at 3, (50 + 60 + 50)/3 at 6
    line = np.arange(7, dtype=np.float64)[:, None, None] * 10
    np.testing.assert_allclose(thick_sampling(line, 3, axis=0).ravel(), [20 / 3, 30.0, 160 / 3], atol=1e-4)


def test_a_single_bright_slice_spreads_over_the_box() -> None:
    """An impulse at thin slice 4 with r = 4: the thick slice at 4 gets ¼ of it, the ones at 0 and 8 nothing."""
    volume = np.zeros((9, 2, 2), dtype=np.int16)
    volume[4] = 800
    np.testing.assert_allclose(thick_sampling(volume, 4, axis=0)[:, 0, 0], [0.0, 200.0, 0.0])
    volume[:] = 0
    volume[2] = 800  # an edge slice (⅛) of the box at 4; the box at 0 meets it twice (slice 2 and mirrored −2)
    np.testing.assert_allclose(thick_sampling(volume, 4, axis=0)[:, 0, 0], [200.0, 100.0, 0.0])


@pytest.mark.parametrize("shape, scale, axis", [((9, 4, 5), 2, 0), ((4, 10, 5), 3, 1), ((4, 5, 13), 4, 2),
                                                ((4, 5, 12), 4, 2), ((3, 3, 2), 2, 2)])
def test_shapes_match_direct_sampling_and_constants_stay(shape, scale: int, axis: int) -> None:
    constant = np.full(shape, -321.0, dtype=np.float32)
    thick = thick_sampling(constant, scale, axis)
    assert thick.shape == direct_sampling(constant, scale, axis).shape
    np.testing.assert_allclose(thick, -321.0, atol=1e-4)


def test_thick_is_an_evaluation_degradation() -> None:
    assert "thick" in DEGRADATIONS and "direct" in DEGRADATIONS
    thin = np.random.default_rng(0).normal(0, 300, (6, 5, 10)).astype(np.float32)
    truth, thick = simulate_thick(thin, 3, axis=2, degradation="thick")
    assert truth.shape == (6, 5, 10)  # (10 − 1) mod 3 = 0: nothing trimmed
    np.testing.assert_array_equal(thick, thick_sampling(truth, 3, 2))
    _, direct = simulate_thick(thin, 3, axis=2, degradation="direct")
    assert thick.shape == direct.shape and not np.allclose(thick, direct)
