"""Run cropping of PInt (``inference.synthesis.body_mask``, ``image_runs``): PInt sees each coronal and
sagittal image only on its runs of body with a margin, the rest of the image gets its cubic base.

The margin covers PInt's chain of 3×3 convolutions, so a PInt whose attention is local gives the same body
voxels as on the whole image, to float tolerance; the trained net's channel attention pools over the image it
is given, which moves body voxels a little (bounded here, measured on real CT in Testing/benchmarks).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from CTSliceSynthesisLib.inference import synthesis
from CTSliceSynthesisLib.inference.fusion import fusion_weights
from CTSliceSynthesisLib.inference.model_store import create_model
from CTSliceSynthesisLib.inference.synthesis import RUN_MARGIN, RUN_MIN_GAP, body_mask, image_runs, synthesize_volume
from CTSliceSynthesisLib.nets.blocks import ChannelAttention
from CTSliceSynthesisLib.nets.pint import LayerAttention

pytestmark = pytest.mark.usefixtures("one_torch_thread")

AIR = -1000.0


def two_bodies(slices: int = 6, seed: int = 0, dtype=np.float32) -> np.ndarray:
    """z-first air (with a little noise) holding two separate blocks of CT-like values, one with a lung."""
    rng = np.random.default_rng(seed)
    volume = np.full((slices, 120, 144), AIR, dtype=np.float32) + rng.normal(0.0, 5.0, (slices, 120, 144))
    volume[:, 30:70, 20:64] = np.clip(rng.normal(100.0, 300.0, (slices, 40, 44)), -1000.0, 3000.0)
    volume[:, 40:60, 30:50] = -850.0 + rng.normal(0.0, 30.0, (slices, 20, 20))  # a lung inside the first body
    volume[:, 40:80, 104:130] = np.clip(rng.normal(100.0, 300.0, (slices, 40, 26)), -1000.0, 3000.0)
    return volume.astype(dtype)


@pytest.fixture(autouse=True)
def four_images_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of a few images, as on real 512² scans (the runs of a chunk are the union of its images')."""
    monkeypatch.setattr(synthesis, "PINT_PIXELS_PER_CALL", 4 * 144 * 6)


def perturbed_model(scale: int, local: bool, seed: int = 5):
    """A lite model whose PInt differs from its cubic start; with ``local`` its attentions do not pool over the
    image (constant channel gates, no layer attention), so every output pixel depends only on its neighbourhood."""
    torch.manual_seed(seed)
    model = create_model("lite", scale)
    with torch.no_grad():
        for parameter in model.networks.pint.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
        if local:
            for module in model.networks.pint.modules():
                if isinstance(module, ChannelAttention):
                    module.squeeze.weight.zero_()
                if isinstance(module, LayerAttention):
                    module.gamma.zero_()
    return model


def whole_images(monkeypatch: pytest.MonkeyPatch, volume: np.ndarray, scale: int, model) -> np.ndarray:
    with monkeypatch.context() as patch:
        patch.setattr(synthesis, "RUN_CROPPING", False)
        patch.setattr(synthesis, "body_box", lambda source: None)
        return synthesize_volume(volume, scale, model, axis=0, fusion=fusion_weights("pint")).volume


def test_runs_by_hand() -> None:
    line = np.zeros((1, 200), dtype=bool)
    assert image_runs(line) == []
    line[0, 50:60] = True
    assert image_runs(line) == [(50 - RUN_MARGIN, 60 + RUN_MARGIN)]
    line[0, 60 + 2 * RUN_MARGIN + RUN_MIN_GAP : 140] = True  # air gap of exactly RUN_MIN_GAP: two runs
    assert image_runs(line) == [(34, 76), (108, 156)]
    line[0, 60 + 2 * RUN_MARGIN + RUN_MIN_GAP - 1] = True  # one pixel less: merged
    assert image_runs(line) == [(34, 156)]
    line[0, 195] = True  # closer than the gap: merged, and clipped to the image
    assert image_runs(line) == [(34, 200)]
    edge = np.zeros((1, 200), dtype=bool)
    edge[0, [2, 197]] = True
    assert image_runs(edge) == [(0, 19), (181, 200)]
    lines = np.zeros((3, 200), dtype=bool)
    lines[0, 10], lines[2, 12] = True, True  # a chunk's runs are the union of its images
    assert image_runs(lines) == [(0, 12 + 1 + RUN_MARGIN)]


def test_the_body_mask_fills_lungs_but_not_the_air_between_bodies() -> None:
    mask = body_mask(two_bodies())
    assert mask[30:70, 20:64].all()  # the lung (−850 HU) is inside the first body
    assert not mask[:, 64:104].any() and not mask[:, :20].any() and not mask[:30].any() and not mask[80:].any()
    assert mask[40:80, 104:130].all() and mask.sum() == 40 * 44 + 40 * 26


@pytest.mark.parametrize("scale", [2, 3])
def test_local_pint_is_unchanged_inside_the_body(monkeypatch: pytest.MonkeyPatch, scale: int) -> None:
    """The margin covers the receptive field: body voxels equal the whole-image run to float tolerance; air
    outside the runs is the cubic base."""
    volume = two_bodies()
    model = perturbed_model(scale, local=True)
    cropped = synthesize_volume(volume, scale, model, axis=0, fusion=fusion_weights("pint")).volume
    whole = whole_images(monkeypatch, volume, scale, model)
    body = body_mask(volume)
    assert np.abs(cropped - whole)[:, ~body].max() > 0.01  # the runs did change the air, so cropping happened
    np.testing.assert_allclose(cropped[:, body], whole[:, body], rtol=0, atol=2e-3)
    cubic = whole_images(monkeypatch, volume, scale, create_model("lite", scale))  # an untrained model is cubic
    far = np.zeros(volume.shape[1:], dtype=bool)  # rows in neither a coronal nor a sagittal run (chunks of 4)
    far[: 30 - RUN_MARGIN - 4] = far[80 + RUN_MARGIN + 4 :] = True
    np.testing.assert_allclose(cropped[:, far], cubic[:, far], rtol=0, atol=2e-3)


def test_trained_like_pint_moves_body_voxels_little(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the attention pooling over the run instead of the image, body voxels move by a fraction of the
    view's own correction."""
    volume = two_bodies(seed=1)
    model = perturbed_model(2, local=False)
    cropped = synthesize_volume(volume, 2, model, axis=0, fusion=fusion_weights("pint")).volume
    whole = whole_images(monkeypatch, volume, 2, model)
    cubic = whole_images(monkeypatch, volume, 2, create_model("lite", 2))
    body = body_mask(volume)
    change = np.abs(cropped - whole)[1::2][:, body]
    correction = np.abs(whole - cubic)[1::2][:, body]
    assert change.mean() < 0.05 * correction.mean()


@pytest.mark.parametrize("dtype", [np.float32, np.int16])
def test_acquired_slices_bit_exact_and_runs_deterministic(dtype) -> None:
    volume = two_bodies(seed=2, dtype=dtype)
    model = perturbed_model(2, local=False)
    first = synthesize_volume(volume, 2, model, axis=0).volume
    second = synthesize_volume(volume, 2, model, axis=0).volume
    assert first.dtype == volume.dtype and np.array_equal(first[::2], volume)
    assert np.array_equal(first, second)
    moved = synthesize_volume(np.moveaxis(volume, 0, 2), 2, model, axis=2).volume  # thick axis last
    assert np.array_equal(np.moveaxis(moved, 2, 0), first)


def test_the_margin_is_pints_conv_chain() -> None:
    """A change of one input pixel reaches at most :func:`pint_conv_chain` pixels along the image (local PInt;
    the last pixels' share underflows float32)."""
    from CTSliceSynthesisLib.inference.synthesis import pint_conv_chain

    model = perturbed_model(2, local=True)
    pint = model.networks.pint
    assert pint_conv_chain(pint) == RUN_MARGIN == 16
    assert pint_conv_chain(create_model("paper", 2).networks.pint) == 91
    images = torch.rand(1, 1, 96, 12, generator=torch.Generator().manual_seed(0)) * 0.3
    changed = images.clone()
    changed[0, 0, 48, 6] += 0.2
    with torch.no_grad():
        difference = (pint.new_values(changed) - pint.new_values(images)).abs()[0].amax(dim=1)
    reached = torch.nonzero(difference > 0).flatten()
    assert 48 - RUN_MARGIN <= reached.min().item() <= 48 - 12 and 48 + 12 <= reached.max().item() <= 48 + RUN_MARGIN
