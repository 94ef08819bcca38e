"""The body crop of whole-volume synthesis (``inference.synthesis.body_box``) and the fixed fusions
(``inference.fusion.fusion_weights``): the box by hand, when cropping is skipped, and that an untrained lite model
(every net starts as its cubic base) synthesizes cubic interpolation with and without the crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import untrained_lite
from CTSliceSynthesisLib.core.config import DEFAULT_FUSION, FUSIONS
from CTSliceSynthesisLib.core.errors import InputError
from CTSliceSynthesisLib.core.interpolation import upsample_cubic
from CTSliceSynthesisLib.inference.fusion import FusionWeights, fusion_weights
from CTSliceSynthesisLib.inference.model_store import create_model
from CTSliceSynthesisLib.inference.synthesis import BODY_HU, BODY_MARGIN, CROP_MAX_AREA, body_box, synthesize_volume

pytestmark = pytest.mark.usefixtures("one_torch_thread")

AIR = -1000.0


def air(shape=(4, 64, 64)) -> np.ndarray:
    return np.full(shape, AIR, dtype=np.float32)


def body_in_air(shape=(5, 64, 64), rows=(24, 40), columns=(26, 38), seed: int = 0) -> np.ndarray:
    """Air with a block of CT-like values (kept inside the networks' [−1024, 3072] HU)."""
    volume = air(shape)
    block = np.random.default_rng(seed).normal(100.0, 300.0, (shape[0], rows[1] - rows[0], columns[1] - columns[0]))
    volume[:, rows[0] : rows[1], columns[0] : columns[1]] = np.clip(block, -1000.0, 3000.0)
    return volume


def cubic_reference(volume: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """Cubic B-spline along ``axis``, synthesized slices clipped to the networks' range, acquired ones as given."""
    reference = upsample_cubic(volume, scale, axis=axis).astype(np.float32)
    moved = np.moveaxis(reference, axis, 0)
    new = np.arange(moved.shape[0]) % scale != 0
    moved[new] = np.clip(moved[new], -1024.0, 3072.0)
    moved[~new] = np.moveaxis(volume, axis, 0)
    return reference


# --- body_box -------------------------------------------------------------------------------------------------


def test_the_box_holds_the_body_and_the_margin() -> None:
    volume = air()
    volume[2, 28:36, 30:34] = 40.0
    assert BODY_MARGIN == 16
    assert body_box(volume) == (28 - 16, 36 + 16, 30 - 16, 34 + 16)


def test_the_box_is_clipped_to_the_image() -> None:
    volume = air((3, 64, 80))
    volume[1, 2:6, 70:75] = 300.0  # near the top and the right edge
    assert body_box(volume) == (0, 6 + 16, 70 - 16, 80)


def test_body_in_any_slice_counts() -> None:
    """Slices are scanned in slabs of 16: body in the first and in the 21st slice both widen the box."""
    volume = air((24, 96, 96))
    volume[0, 40:44, 40:44] = 50.0
    volume[20, 50:52, 55:60] = 50.0
    assert body_box(volume) == (40 - 16, 52 + 16, 40 - 16, 60 + 16)


def test_the_threshold_is_strictly_above_body_hu() -> None:
    volume = air()
    volume[1, 30, 30] = BODY_HU  # not body
    assert body_box(volume) is None  # nothing above the threshold: no crop
    volume[1, 30, 30] = BODY_HU + 1.0
    assert body_box(volume) == (14, 47, 14, 47)


def test_no_crop_when_the_box_would_cover_most_of_the_image() -> None:
    assert body_box(np.zeros((3, 32, 32), dtype=np.float32)) is None  # all body
    volume = air()
    volume[0, 16:48, 16:48] = 0.0  # box 64 × 64 after the margin: the whole image
    assert body_box(volume) is None
    volume = air()
    volume[0, 26:38, 20:45] = 0.0  # box 44 × 57 = 61 % of the image: cropped
    assert body_box(volume) == (10, 54, 4, 61) and 44 * 57 <= CROP_MAX_AREA * 64 * 64
    volume[0, 26:38, 4:60] = 0.0  # box 44 × 64 = 69 %: still cropped; 56 rows would be 88 %
    assert body_box(volume) == (10, 54, 0, 64)
    volume[0, 20:44, 4:60] = 0.0
    assert body_box(volume) is None


# --- an untrained model is cubic interpolation, cropped or not ------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("fusion", ["pint", "equal"])
def test_untrained_model_is_cubic_with_the_crop(scale: int, fusion: str) -> None:
    volume = body_in_air()
    assert body_box(volume) == (8, 56, 10, 54)  # the crop applies
    result = synthesize_volume(volume, scale, untrained_lite(scale), axis=0, fusion=fusion_weights(fusion)).volume
    assert result.shape == (4 * scale + 1, 64, 64)
    np.testing.assert_allclose(result, cubic_reference(volume, scale, 0), rtol=0, atol=2e-3)
    assert np.array_equal(result[::scale], volume)


@pytest.mark.parametrize("scale", [2, 3])
def test_untrained_model_is_cubic_without_the_crop(scale: int) -> None:
    volume = np.clip(np.random.default_rng(scale).normal(0.0, 300.0, (20, 24, 5)), -1000, 3000).astype(np.float32)
    assert body_box(np.moveaxis(volume, 2, 0)) is None
    result = synthesize_volume(volume, scale, untrained_lite(scale), axis=2).volume
    np.testing.assert_allclose(result, cubic_reference(volume, scale, 2), rtol=0, atol=2e-3)
    assert np.array_equal(result[..., ::scale], volume)


def test_acquired_slices_pass_through_bitwise_in_both_cases() -> None:
    """int16 and float32 inputs, body in air (cropped) and body everywhere (not): acquired slices are copied."""
    model = untrained_lite(2)
    cropped = body_in_air((4, 64, 64), seed=3)
    cropped[1, 30, 30] = -2048.0  # outside the networks' range: copied all the same
    uncropped = np.random.default_rng(4).normal(0.0, 300.0, (4, 24, 24)).astype(np.float32) + np.float32(0.123)
    for volume in (cropped, uncropped, cropped.astype(np.int16), uncropped.astype(np.int16)):
        for fusion in ("pint", "equal"):
            result = synthesize_volume(volume, 2, model, axis=0, fusion=fusion_weights(fusion)).volume
            assert result.dtype == volume.dtype
            assert np.array_equal(result[::2], volume)


def test_the_crop_is_used_only_without_sint(monkeypatch: pytest.MonkeyPatch) -> None:
    """SInt-A's channel attention pools over the whole image, so runs that need SInt-A (eq. 7, a disagreement
    map) are never cropped; PInt alone is cropped and stays within a fraction of a HU of the uncropped run."""
    from CTSliceSynthesisLib.inference import synthesis

    torch.manual_seed(5)
    model = create_model("lite", 2)
    with torch.no_grad():
        for parameter in model.networks.parameters():  # views that differ from the cubic start
            parameter.add_(torch.randn_like(parameter) * 0.01)
    volume = body_in_air((4, 64, 64), seed=6)
    assert body_box(volume) is not None
    cropped = {
        "equal": synthesize_volume(volume, 2, model, axis=0, fusion=fusion_weights("equal")).volume,
        "pint": synthesize_volume(volume, 2, model, axis=0, fusion=fusion_weights("pint")).volume,
        "map": synthesize_volume(volume, 2, model, axis=0, with_disagreement=True).disagreement,
    }
    monkeypatch.setattr(synthesis, "body_box", lambda source: None)
    monkeypatch.setattr(synthesis, "RUN_CROPPING", False)
    whole = {
        "equal": synthesize_volume(volume, 2, model, axis=0, fusion=fusion_weights("equal")).volume,
        "pint": synthesize_volume(volume, 2, model, axis=0, fusion=fusion_weights("pint")).volume,
        "map": synthesize_volume(volume, 2, model, axis=0, with_disagreement=True).disagreement,
    }
    assert np.array_equal(cropped["equal"], whole["equal"]) and np.array_equal(cropped["map"], whole["map"])
    assert not np.array_equal(cropped["pint"], whole["pint"])
    top, bottom, left, right = body_box(volume)
    margin = synthesis.BODY_MARGIN
    body = (slice(None), slice(top + margin, bottom - margin), slice(left + margin, right - margin))
    assert np.abs(cropped["pint"] - whole["pint"])[body].max() < 0.5


# --- fusions ----------------------------------------------------------------------------------------------------


def test_fixed_fusions_by_name() -> None:
    assert set(FUSIONS) == {"pint", "equal", "calibrated"} and DEFAULT_FUSION in FUSIONS
    pint = fusion_weights("pint")
    assert pint.as_dict() == {"axial": 0.0, "coronal": 0.5, "sagittal": 0.5, "linear": 0.0, "cubic": 0.0}
    equal = fusion_weights("equal")
    assert equal.axial == equal.coronal == equal.sagittal == pytest.approx(1 / 3)
    assert equal.linear == equal.cubic == 0.0
    assert fusion_weights("calibrated") is None
    with pytest.raises(InputError, match="unknown fusion"):
        fusion_weights("median")


def test_pint_fusion_ignores_sint_a() -> None:
    """With the ``pint`` fusion changing SInt-A's weights changes nothing; with ``equal`` it does."""
    torch.manual_seed(7)
    model = create_model("lite", 2)
    with torch.no_grad():
        for parameter in model.networks.pint.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    volume = np.clip(np.random.default_rng(8).normal(0, 300, (6, 20, 24)), -1000, 3000).astype(np.float32)
    before = {name: synthesize_volume(volume, 2, model, axis=0, fusion=fusion_weights(name)).volume
              for name in ("pint", "equal")}
    with torch.no_grad():
        for parameter in model.networks.sint.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    after = {name: synthesize_volume(volume, 2, model, axis=0, fusion=fusion_weights(name)).volume
             for name in ("pint", "equal")}
    np.testing.assert_array_equal(after["pint"], before["pint"])
    assert np.abs(after["equal"] - before["equal"]).max() > 0.1
    two_views = synthesize_volume(volume, 2, model, axis=0, fusion=FusionWeights.equal_views(("coronal", "sagittal")))
    np.testing.assert_array_equal(two_views.volume, after["pint"])
