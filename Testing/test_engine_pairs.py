"""Scale-matched in-plane pairs for PInt (``training.pairs.InPlanePairSampler``): layout, range, determinism, the
geometry of input and target (recovered by hand from a quadratic field), air redraws and refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from CTSliceSynthesisLib.core.errors import InputError
from CTSliceSynthesisLib.core.intensity import hu_to_unit
from CTSliceSynthesisLib.training.data import TrainingVolume
from CTSliceSynthesisLib.training.pairs import AIR_STD_HU, MIN_ROWS, InPlanePairSampler, PairShape
from CTSliceSynthesisLib.training.profiles import ProfileRange

pytestmark = pytest.mark.usefixtures("one_torch_thread")

PROFILES = ProfileRange(spacing_mm=(1.0, 6.0), thickness_ratio=(0.5, 1.5))


def noise_volume(shape=(4, 32, 32), seed: int = 0, spacing: float = 3.0) -> TrainingVolume:
    data = np.random.default_rng(seed).normal(0.0, 300.0, shape).astype(np.float32)
    return TrainingVolume("noise", data, spacing, (0.8, 0.8))


def field_volume(field, shape=(3, 32, 32), spacing: float = 3.0, pixel=(0.8, 0.8), thickness=None) -> TrainingVolume:
    """Every slice the same image ``field(h, w)`` (HU) on pixel indices."""
    h, w = np.meshgrid(np.arange(shape[1], dtype=np.float64), np.arange(shape[2], dtype=np.float64), indexing="ij")
    image = np.asarray(field(h, w), dtype=np.float32)
    return TrainingVolume("field", np.repeat(image[None], shape[0], axis=0), spacing, pixel, thickness)


def sampler(volumes, scale=2, seed=0, profiles=PROFILES, **options) -> InPlanePairSampler:
    return InPlanePairSampler(volumes, scale, profiles, torch.Generator().manual_seed(seed), **options)


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 6])
def test_batches_have_the_documented_layout_and_range(scale: int) -> None:
    """``low (N, 1, A, L)`` and ``target (N, 1, A, r(L − 1) + 1)`` in [0, 1]; rows shrink to fit 32-pixel images."""
    pairs = sampler([noise_volume()], scale, shape=PairShape(rows=48, columns=12))
    assert pairs.shape == PairShape(31, 12) and pairs.target_columns == scale * 11 + 1
    low, target = pairs.sample(3)
    assert low.shape == (3, 1, 31, 12) and target.shape == (3, 1, 31, scale * 11 + 1)
    assert low.dtype == target.dtype == torch.float32
    for tensor in (low, target):
        assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    assert float(target.std()) > 0.01  # noise, not a constant


def test_rows_are_kept_when_the_images_are_large_enough() -> None:
    pairs = sampler([noise_volume((2, 40, 64))], shape=PairShape(rows=16, columns=6))
    low, target = pairs.sample(2)
    assert low.shape == (2, 1, 16, 6) and target.shape == (2, 1, 16, 11)


def test_a_seeded_generator_makes_the_same_pairs() -> None:
    volumes = [noise_volume(seed=1), noise_volume((5, 30, 36), seed=2)]
    first, second = sampler(volumes, seed=5).sample(4), sampler(volumes, seed=5).sample(4)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    other = sampler(volumes, seed=6).sample(4)
    assert not torch.equal(first[1], other[1])


def test_the_first_half_of_a_batch_runs_along_the_images_last_axis() -> None:
    """An image that varies only along its last axis W: pairs along W vary along their columns and are constant
    down their rows; pairs along H (the second half of a batch) are the other way round."""
    pairs = sampler([field_volume(lambda h, w: 40.0 * w - 600.0)], shape=PairShape(rows=16, columns=6))
    low, target = pairs.sample(5)  # ⌈5/2⌉ = 3 along W, then 2 along H
    for index in range(5):
        along_w = index < 3
        for tensor in (low[index, 0], target[index, 0]):
            row_spread = float((tensor - tensor[:1]).abs().max())  # variation down the rows
            column_spread = float((tensor - tensor[:, :1]).abs().max())  # variation along the columns
            varying, constant = (column_spread, row_spread) if along_w else (row_spread, column_spread)
            assert varying > 0.01 and constant < 1e-6


def test_target_columns_r_m_sit_on_input_column_m() -> None:
    """On a field linear in both axes every box average is the field at the box's centre, whatever its width: the
    input equals every r-th target column, and target columns are equally spaced."""
    scale = 3
    pairs = sampler([field_volume(lambda h, w: 30.0 * h + 20.0 * w - 900.0)], scale, shape=PairShape(12, 5))
    for index in range(6):
        low, target = pairs.sample_one(along_last=index % 2 == 0)  # HU, (A, L) and (A, r(L − 1) + 1)
        assert low.shape == (12, 5) and target.shape == (12, 13)
        # float32 running integrals of values up to ~1000 HU: 1e-2 HU of rounding (columns differ by ~10 HU)
        torch.testing.assert_close(low, target[:, ::scale], atol=1e-2, rtol=0)
        steps = target.diff(dim=1)
        assert float(steps.abs().min()) > 1.0
        torch.testing.assert_close(steps, steps[:, :1].expand_as(steps), atol=1e-2, rtol=0)


def test_a_field_constant_along_z_gives_the_same_input_and_target() -> None:
    pairs = sampler([field_volume(lambda h, w: 25.0 * h - 300.0)], 2, shape=PairShape(10, 6))
    low, target = pairs.sample_one(along_last=True)  # "z" is W, along which nothing changes
    torch.testing.assert_close(low, target[:, ::2], atol=1e-3, rtol=0)
    torch.testing.assert_close(target, target[:, :1].expand_as(target), atol=1e-3, rtol=0)


def geometry_of(low: torch.Tensor, target: torch.Tensor, scale: int, curvature: float, pixel: float):
    """Δz and T in mm of a pair cut from ``curvature · (w − c)²`` along W: a box of width b pixels averages
    x² to x² + b²/12, so target columns (boxes of one step s, every s) have second differences 2·curvature·s²,
    and input minus target at the input's positions is curvature·(T² − s²)/12 (in pixels)."""
    step = float(np.sqrt(float(target.diff(dim=1).diff(dim=1).mean()) / (2 * curvature)))
    excess = float((low - target[:, ::scale]).mean()) / curvature * 12.0
    thickness = float(np.sqrt(excess + step**2))
    return step * scale * pixel, thickness * pixel


def test_profiles_are_drawn_from_the_range_in_mm() -> None:
    """Δz from the range, T = 0.5 Δz (fixed ratio), with 0.5 mm pixels: recovered from the pair's values."""
    profiles = ProfileRange(spacing_mm=(1.0, 1.5), thickness_ratio=(0.5, 0.5))
    volume = field_volume(lambda h, w: (w - 40.0) ** 2 * 0.5, shape=(2, 16, 80), pixel=(0.5, 0.5))
    pairs = sampler([volume], 2, profiles=profiles, shape=PairShape(8, 12))
    for _ in range(3):
        spacing, thickness = geometry_of(*pairs.sample_one(along_last=True), 2, 0.5, 0.5)
        assert 1.0 - 1e-2 <= spacing <= 1.5 + 1e-2
        assert thickness == pytest.approx(0.5 * spacing, abs=2e-2)


@pytest.mark.parametrize("thickness", [3.0, None])
def test_own_geometry_uses_the_volumes_spacing_and_thickness(thickness) -> None:
    """With ``own_geometry`` Δz is the volume's 2 mm and T its 3 mm when known, else 2 mm × the drawn ratio
    (fixed at 0.5 here), however far the range's spacings are."""
    profiles = ProfileRange(spacing_mm=(1.0, 1.5), thickness_ratio=(0.5, 0.5))
    volume = field_volume(lambda h, w: (w - 32.0) ** 2 * 0.5, shape=(2, 16, 64), spacing=2.0, pixel=(0.5, 0.5),
                          thickness=thickness)
    pairs = sampler([volume], 2, profiles=profiles, shape=PairShape(8, 12), own_geometry=True)
    for _ in range(2):
        spacing, recovered = geometry_of(*pairs.sample_one(along_last=True), 2, 0.5, 0.5)
        assert spacing == pytest.approx(2.0, abs=1e-2)
        assert recovered == pytest.approx(3.0 if thickness else 1.0, abs=2e-2)
    plain = sampler([volume], 2, profiles=profiles, shape=PairShape(8, 12))
    assert geometry_of(*plain.sample_one(along_last=True), 2, 0.5, 0.5)[0] <= 1.5 + 1e-2


def test_air_patches_are_drawn_again() -> None:
    """A volume with one air slice in four: without redraws about a quarter of the pairs would be air."""
    data = np.random.default_rng(3).normal(0.0, 300.0, (4, 24, 24)).astype(np.float32)
    data[0] = -1000.0
    pairs = sampler([TrainingVolume("mixed", data, 3.0, (0.8, 0.8))], shape=PairShape(12, 6))
    for index in range(24):
        _, target = pairs.sample_one(along_last=index % 2 == 0)
        assert float(target.std()) >= AIR_STD_HU


def test_a_volume_of_air_still_gives_pairs() -> None:
    """Redraws are bounded: an all-air volume gives air pairs rather than looping."""
    air = TrainingVolume("air", np.full((2, 20, 20), -1000.0, dtype=np.float32), 3.0, (0.8, 0.8))
    low, target = sampler([air], shape=PairShape(8, 6)).sample(2)
    expected = float(hu_to_unit(torch.tensor(-1000.0)))
    for tensor in (low, target):
        torch.testing.assert_close(tensor, torch.full_like(tensor, expected), atol=1e-6, rtol=0)


def test_images_of_at_most_min_rows_pixels_are_refused_or_left_out() -> None:
    small = TrainingVolume("small", np.zeros((4, MIN_ROWS, 40), dtype=np.float32), 3.0)
    with pytest.raises(InputError, match=f"larger than {MIN_ROWS} pixels"):
        sampler([small])
    big = noise_volume((2, MIN_ROWS + 1, 24))
    pairs = sampler([small, big], shape=PairShape(48, 6))
    assert [v.name for v in pairs.volumes] == ["noise"] and pairs.shape.rows == MIN_ROWS
    low, target = pairs.sample(2)
    assert low.shape == (2, 1, MIN_ROWS, 6) and target.shape == (2, 1, MIN_ROWS, 11)
