"""Whole-volume inference: exact pass-through, eq. 7 fusion, shapes, dtypes, progress and cancel."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from CTSliceSynthesisLib.core.errors import InputError, SynthesisCancelled
from CTSliceSynthesisLib.core.intensity import hu_to_unit, unit_to_hu
from CTSliceSynthesisLib.inference.model_store import create_model
from CTSliceSynthesisLib.inference.synthesis import synthesize_volume
from CTSliceSynthesisLib.nets.views import insert_slices, interpolate_axial, interpolate_coronal, interpolate_sagittal


def trained_like(scale: int):
    """A random lite model whose attention gates are non-zero, so every branch contributes."""
    torch.manual_seed(scale)
    model = create_model("lite", scale)
    with torch.no_grad():
        model.networks.pint.layer_attention.gamma.fill_(0.3)
        model.networks.pint.channel_spatial_attention.gamma.fill_(0.2)
        for parameter in model.networks.parameters():
            parameter.mul_(0.5)
    return model


def ct_like(shape, seed=0, dtype=np.int16) -> np.ndarray:
    """Smooth HU structure plus noise, within the CT range."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    volume = 600 * np.sin(grids[0] * 2) * np.cos(grids[1] * 3) + 80 * grids[2] + rng.normal(0, 30, shape)
    return volume.astype(dtype)


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_acquired_slices_pass_through_exactly(scale: int, axis: int) -> None:
    volume = ct_like((37, 53, 9) if axis == 2 else (9, 37, 53) if axis == 0 else (37, 9, 53))
    volume.flat[::97] = -2048  # outside the networks' range: still copied exactly
    result = synthesize_volume(volume, scale, trained_like(scale), axis=axis).volume
    expected_shape = list(volume.shape)
    expected_shape[axis] = (volume.shape[axis] - 1) * scale + 1
    assert result.shape == tuple(expected_shape)
    assert result.dtype == volume.dtype
    taken = np.take(result, np.arange(0, result.shape[axis], scale), axis=axis)
    assert np.array_equal(taken, volume)


def test_float_input_passes_through_bit_exact() -> None:
    volume = ct_like((24, 16, 5), dtype=np.float32) + np.float32(0.123456)
    result = synthesize_volume(volume, 2, trained_like(2)).volume
    assert result.dtype == np.float32
    assert np.array_equal(result[..., ::2], volume)


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 6])
def test_synthesized_slices_are_the_mean_of_three_views(scale: int) -> None:
    """Eq. 7 on odd sizes: new slices = (SInt-A + PInt-C + PInt-S)/3, computed independently here."""
    model = trained_like(scale)
    volume = ct_like((37, 53, 9), seed=scale).astype(np.float32)
    result = synthesize_volume(volume, scale, model, with_disagreement=True)

    with torch.no_grad():
        unit = hu_to_unit(torch.from_numpy(np.moveaxis(volume, 2, 0)).float())[None]
        new, _, _ = interpolate_axial(model.networks.sint, unit)
        axial = insert_slices(unit, new, scale)
        coronal = interpolate_coronal(model.networks.pint, unit)
        sagittal = interpolate_sagittal(model.networks.pint, unit)
    views = torch.stack((axial, coronal, sagittal))[:, 0]
    expected = unit_to_hu(views.mean(0)).clamp(-1024, 3072).numpy()
    synthesized = np.arange(expected.shape[0]) % scale != 0
    got = np.moveaxis(result.volume, 2, 0)
    np.testing.assert_allclose(got[synthesized], expected[synthesized], atol=2e-3)
    spread = np.moveaxis(result.disagreement, 2, 0)
    expected_spread = (views.std(0, unbiased=False) * 4096).numpy()
    np.testing.assert_allclose(spread[synthesized], expected_spread[synthesized], rtol=1e-3, atol=2e-2)
    assert np.all(spread[~synthesized] == 0)
    # At acquired slices the coronal and sagittal views both return the input exactly.
    assert torch.equal(coronal[0, ::scale], unit[0]) and torch.equal(sagittal[0, ::scale], unit[0])


def test_integer_output_is_rounded_and_clipped_to_ct_range() -> None:
    model = trained_like(2)
    with torch.no_grad():
        model.networks.sint.head_out.bias.fill_(50.0)  # push the axial view far above 3072 HU
    volume = ct_like((16, 16, 4))
    result = synthesize_volume(volume, 2, model).volume
    assert result[..., 1::2].max() <= 3072 and result[..., 1::2].min() >= -1024


def test_progress_reaches_one_and_cancel_stops() -> None:
    model = trained_like(2)
    volume = ct_like((32, 32, 6))
    fractions = []
    synthesize_volume(volume, 2, model, progress=lambda f, message: fractions.append(f))
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)
    calls = []
    with pytest.raises(SynthesisCancelled):
        synthesize_volume(volume, 2, model, cancel=lambda: calls.append(1) or len(calls) > 1)


@pytest.mark.parametrize(
    "volume, scale, message",
    [
        (np.zeros((8, 8), np.int16), 2, "3-D"),
        (np.zeros((8, 8, 1), np.int16), 2, "at least 2 slices"),
        (np.zeros((8, 8, 4), np.int16), 7, "unsupported scale"),
        (np.full((8, 8, 4), np.nan, np.float32), 2, "NaN"),
        (np.zeros((8, 8, 4), bool), 2, "voxel type"),
    ],
)
def test_bad_volumes_are_refused(volume: np.ndarray, scale: int, message: str) -> None:
    with pytest.raises(InputError, match=message):
        synthesize_volume(volume, scale, create_model("lite", 2))


def test_model_for_another_scale_is_refused() -> None:
    with pytest.raises(InputError, match="×3"):
        synthesize_volume(np.zeros((8, 8, 4), np.int16), 2, create_model("lite", 3))


def test_view_subsets_average_the_chosen_views() -> None:
    """The full fusion is the mean of the three single-view syntheses; bad subsets are refused."""
    from CTSliceSynthesisLib.core.errors import InputError
    from CTSliceSynthesisLib.inference.model_store import create_model
    from CTSliceSynthesisLib.inference.synthesis import synthesize_volume

    torch.manual_seed(0)
    model = create_model("lite", 2)
    for parameter in model.networks.parameters():  # make every view differ from the cubic start
        parameter.data.add_(torch.randn_like(parameter) * 0.01)
    volume = np.random.default_rng(0).uniform(-500, 500, size=(20, 24, 5)).astype(np.float32)
    single = [synthesize_volume(volume, 2, model, views=(view,)).volume for view in ("axial", "coronal", "sagittal")]
    fused = synthesize_volume(volume, 2, model).volume
    np.testing.assert_allclose(fused, np.mean(single, axis=0), atol=0.05)
    assert np.abs(single[0] - single[1]).max() > 0.1
    pair = synthesize_volume(volume, 2, model, views=("coronal", "sagittal")).volume
    np.testing.assert_allclose(pair, (single[1] + single[2]) / 2, atol=0.05)
    with pytest.raises(InputError, match="views"):
        synthesize_volume(volume, 2, model, views=("frontal",))
    with_map = synthesize_volume(volume, 2, model, views=("axial",), with_disagreement=True)
    np.testing.assert_allclose(with_map.volume, single[0], atol=0.05)
    assert with_map.disagreement is not None and with_map.disagreement.max() > 0


def test_fusion_weights_mix_views_and_classical_interpolation() -> None:
    """Weights over views, linear and cubic give the same weighted sum of the single-candidate results, on the
    streaming path and on the disagreement path; invalid weights are refused."""
    from CTSliceSynthesisLib.core.errors import InputError
    from CTSliceSynthesisLib.core.interpolation import upsample_cubic, upsample_linear
    from CTSliceSynthesisLib.inference.fusion import FusionWeights
    from CTSliceSynthesisLib.inference.model_store import create_model
    from CTSliceSynthesisLib.inference.synthesis import synthesize_volume

    torch.manual_seed(1)
    model = create_model("lite", 3)
    for parameter in model.networks.parameters():
        parameter.data.add_(torch.randn_like(parameter) * 0.01)
    volume = np.random.default_rng(1).uniform(-500, 500, size=(16, 24, 9)).astype(np.float32)
    weights = FusionWeights(axial=0.1, coronal=0.2, sagittal=0.3, linear=0.15, cubic=0.25)
    single = {
        view: synthesize_volume(volume, 3, model, views=(view,)).volume for view in ("axial", "coronal", "sagittal")
    }
    single["linear"] = upsample_linear(volume, 3, axis=2)
    single["cubic"] = np.clip(upsample_cubic(volume, 3, axis=2), -1024, 3072)
    expected = sum(weight * single[name] for name, weight in weights.as_dict().items())
    np.testing.assert_allclose(synthesize_volume(volume, 3, model, fusion=weights).volume, expected, atol=0.05)
    mapped = synthesize_volume(volume, 3, model, fusion=weights, with_disagreement=True).volume
    np.testing.assert_allclose(mapped, expected, atol=0.05)
    with pytest.raises(InputError, match="sum to 1"):
        FusionWeights(axial=0.5, coronal=0.5, sagittal=0.5)
    with pytest.raises(InputError, match="non-negative"):
        FusionWeights(axial=-0.2, coronal=0.6, sagittal=0.6)
