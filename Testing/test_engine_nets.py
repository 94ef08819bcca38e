"""Shapes and exact behaviour of SInt-A, PInt, their attention modules and the view helpers.

Spec §1, §2, §4 and §8.
"""

from __future__ import annotations

from typing import Dict, List

import pytest
import numpy as np
import torch
import torch.nn.functional as F

from CTSliceSynthesisLib.core.config import model_config
from CTSliceSynthesisLib.core.geometry import upsampled_length
from CTSliceSynthesisLib.nets import PixelInterpolator, SliceInterpolator
from CTSliceSynthesisLib.nets.pint import ChannelSpatialAttention, LayerAttention
from CTSliceSynthesisLib.nets.views import (
    coronal_images,
    from_coronal,
    from_sagittal,
    insert_slices,
    interpolate_axial,
    interpolate_coronal,
    interpolate_sagittal,
    new_positions,
    sagittal_images,
)

SCALES = (2, 3, 4, 5, 6)


def lite_sint(scale: int) -> SliceInterpolator:
    """A lite SInt-A (C = 64, block 8, 2 RCABs per group)."""
    return SliceInterpolator(model_config("lite", scale).sint, scale)


def lite_pint(scale: int, gammas: float = 0.0) -> PixelInterpolator:
    """A lite PInt; ``gammas`` overrides the (zero-initialised) LAM and CSAM scales so both paths matter."""
    pint = PixelInterpolator(model_config("lite", scale).pint, scale)
    with torch.no_grad():
        pint.layer_attention.gamma.fill_(gammas)
        pint.channel_spatial_attention.gamma.fill_(gammas)
    return pint


# --------------------------------------------------------------------------------------------------------------
# SInt-A


@pytest.mark.parametrize("scale", SCALES)
def test_sint_output_shape(fixed_seed: int, scale: int) -> None:
    """``(N,1,H,W) × 2 → (N, r−1, H, W)`` with H ≠ W."""
    sint = lite_sint(scale).eval()
    with torch.no_grad():
        out = sint(torch.rand(3, 1, 16, 24), torch.rand(3, 1, 16, 24))
    assert out.slices.shape == (3, scale - 1, 16, 24)
    assert torch.isfinite(out.slices).all()


def test_paper_sint_output_shape_r4(fixed_seed: int) -> None:
    """The paper preset (C = 192) on the smallest size that its reflection padding allows."""
    sint = SliceInterpolator(model_config("paper", 4).sint, 4).eval()
    with torch.no_grad():
        out = sint(torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16))
    assert out.slices.shape == (1, 3, 16, 16)


@pytest.mark.parametrize("height, width", [(12, 16), (16, 20), (7, 8)])
def test_sint_rejects_sizes_not_multiple_of_block(fixed_seed: int, height: int, width: int) -> None:
    """H and W must both be multiples of the space-to-depth block (8 for lite)."""
    sint = lite_sint(2).eval()
    with pytest.raises(ValueError):
        sint(torch.rand(1, 1, height, width), torch.rand(1, 1, height, width))


def test_sint_pair_order_matters(fixed_seed: int) -> None:
    """SInt is not symmetric in its two inputs (the concatenation has an order): a cheap wiring check."""
    sint = lite_sint(3).eval()
    a, b = torch.rand(1, 1, 16, 16), torch.rand(1, 1, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(sint(a, b).slices, sint(b, a).slices)


# --------------------------------------------------------------------------------------------------------------
# PInt


@pytest.mark.parametrize("scale", SCALES)
@pytest.mark.parametrize("size", [(7, 5), (9, 3)])
def test_pint_shape_and_exact_pass_through(fixed_seed: int, scale: int, size: tuple) -> None:
    """``(N,1,A,L) → (N,1,A,r(L−1)+1)`` and ``out[..., ::r]`` is bit-identical to the input (spec §4.1)."""
    a, length = size
    pint = lite_pint(scale, gammas=0.3).eval()
    images = torch.rand(3, 1, a, length)
    with torch.no_grad():
        out = pint(images)
    assert out.shape == (3, 1, a, scale * (length - 1) + 1)
    assert torch.equal(out[..., ::scale], images)


@pytest.mark.parametrize("scale", SCALES)
def test_pint_interleaves_predicted_columns(fixed_seed: int, scale: int) -> None:
    """Output column ``r·j + u`` (u ≥ 1) is predicted channel ``u − 1`` at input column j; no column is
    extrapolated beyond the last input column."""
    pint = lite_pint(scale, gammas=0.3).eval()
    captured: Dict[str, torch.Tensor] = {}
    pint.head_out.register_forward_hook(lambda module, args, out: captured.__setitem__("new", out))
    images = torch.rand(2, 1, 6, 4)
    with torch.no_grad():
        out = pint(images)
    new = captured["new"]
    assert new.shape == (2, scale - 1, 6, 4)
    for j in range(4 - 1):
        for u in range(1, scale):
            assert torch.equal(out[:, 0, :, scale * j + u], new[:, u - 1, :, j])


def test_pint_layer_order_and_shared_csam(fixed_seed: int) -> None:
    """LAM sees ``[t6, t5, …, t1]`` (body conv first, newest group first); CSAM is one module used twice,
    first on t6 (spec §4.1)."""
    pint = lite_pint(2, gammas=0.5).eval()
    outputs: Dict[str, torch.Tensor] = {}
    pint.body_tail.register_forward_hook(lambda m, args, out: outputs.__setitem__("t_last", out))
    for index, group in enumerate(pint.groups):
        group.register_forward_hook(lambda m, args, out, i=index: outputs.__setitem__(f"t{i + 1}", out))
    lam_inputs: List[List[torch.Tensor]] = []
    fused_convolution = pint.layer_attention.fused_convolution

    def record_layers(layers: List[torch.Tensor], conv: torch.nn.Conv2d) -> torch.Tensor:
        lam_inputs.append(list(layers))
        return fused_convolution(layers, conv)

    pint.layer_attention.fused_convolution = record_layers  # type: ignore[method-assign]
    csam_inputs: List[torch.Tensor] = []
    pint.channel_spatial_attention.register_forward_pre_hook(lambda m, args: csam_inputs.append(args[0]))
    with torch.no_grad():
        pint(torch.rand(2, 1, 5, 4))
    groups = len(pint.groups)
    expected = [outputs["t_last"]] + [outputs[f"t{i}"] for i in range(groups, 0, -1)]
    assert len(lam_inputs) == 1 and len(lam_inputs[0]) == groups + 1
    assert all(got is want for got, want in zip(lam_inputs[0], expected))
    assert len(csam_inputs) == 2
    assert csam_inputs[0] is outputs["t_last"]


def test_csam_2d_formulation_equals_conv3d(fixed_seed: int) -> None:
    """The banded 2-D convolution equals ``conv3d`` of the one-channel (C, A, L) volume with padding 1."""
    csam = ChannelSpatialAttention()
    with torch.no_grad():
        csam.weight.normal_()
        csam.bias.normal_()
        csam.gamma.fill_(0.7)
    x = torch.randn(2, 5, 6, 7)
    reference = F.conv3d(x[:, None], csam.weight, csam.bias, padding=1)[:, 0]
    logits = csam.attention_logits(x)
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
    expected = x + x * (0.7 * torch.sigmoid(reference))
    torch.testing.assert_close(csam(x), expected, atol=1e-5, rtol=1e-5)


def test_csam_has_conv3d_parameter_shapes() -> None:
    """Same parameters as ``nn.Conv3d(1, 1, 3)`` plus the scalar γ that starts at 0."""
    csam = ChannelSpatialAttention()
    assert csam.weight.shape == (1, 1, 3, 3, 3)
    assert csam.bias.shape == (1,)
    assert csam.gamma.item() == 0.0


def test_layer_attention_matches_direct_computation(fixed_seed: int) -> None:
    """``γ·softmax(rowmax(E) − E)·G + G`` with ``E = G Gᵀ``, per sample, in float64 loops."""
    layer_attention = LayerAttention()
    with torch.no_grad():
        layer_attention.gamma.fill_(0.6)
    n, k, c, a, length = 2, 4, 3, 5, 2
    layers = [0.2 * torch.randn(n, c, a, length) for _ in range(k)]
    out = layer_attention(layers)
    assert out.shape == (n, k * c, a, length)

    expected = torch.empty(n, k, c * a * length, dtype=torch.float64)
    for sample in range(n):
        g = torch.stack([layer[sample].double().flatten() for layer in layers])  # (K, D)
        for i in range(k):
            energy = [float(g[i] @ g[j]) for j in range(k)]
            shifted = [max(energy) - e for e in energy]
            weights = torch.softmax(torch.tensor(shifted, dtype=torch.float64), dim=0)
            expected[sample, i] = 0.6 * sum(weights[j] * g[j] for j in range(k)) + g[i]
    torch.testing.assert_close(out.double(), expected.reshape(n, k * c, a, length), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("images", [1, 3, LayerAttention.FOLD_MAX_IMAGES + 1])
@pytest.mark.parametrize("channels_last", [False, True])
def test_layer_attention_folded_into_convolution(fixed_seed: int, images: int, channels_last: bool) -> None:
    """``fused_convolution`` (attention folded into per-image weights, or the plain path for large batches)
    equals the convolution of the mixed maps, in either memory layout."""
    layer_attention = LayerAttention()
    conv = torch.nn.Conv2d(3 * 4, 5, 3, padding=1)
    with torch.no_grad():
        layer_attention.gamma.fill_(0.8)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    layers = [torch.randn(images, 4, 6, 7).contiguous(memory_format=layout) for _ in range(3)]
    layers = [layer * scale for layer, scale in zip(layers, (0.05, 0.06, 0.07))]  # soft attention, not one-hot
    expected = conv(layer_attention(layers))
    torch.testing.assert_close(layer_attention.fused_convolution(layers, conv), expected, atol=1e-5, rtol=1e-5)


def test_layer_attention_identity_at_init() -> None:
    """γ starts at 0, so LAM initially just concatenates the layers along channels."""
    layers = [torch.randn(1, 2, 3, 3) for _ in range(3)]
    assert torch.equal(LayerAttention()(layers), torch.cat(layers, dim=1))


# --------------------------------------------------------------------------------------------------------------
# Views


def test_new_positions_and_length() -> None:
    """Synthesized indices are those with ``i mod r ≠ 0``; the up-sampled length is ``(l−1)r+1``."""
    assert new_positions(7, 3).tolist() == [1, 2, 4, 5]
    assert new_positions(5, 2).tolist() == [1, 3]
    assert upsampled_length(4, 3) == 10
    assert upsampled_length(7, 2) == 13


@pytest.mark.parametrize("scale", SCALES)
def test_insert_slices_places_originals_and_new_in_order(scale: int) -> None:
    """Originals land at ``::r``, the new slices of pair t fill positions ``t·r + 1 … t·r + r − 1`` in order."""
    batch, slices, h, w = 2, 3, 2, 3
    volume = torch.stack([torch.full((h, w), 100.0 * b + 10.0 * s) for b in range(batch) for s in range(slices)])
    volume = volume.reshape(batch, slices, h, w)
    new_values = [
        [100.0 * b + 10.0 * t + u for t in range(slices - 1) for u in range(1, scale)] for b in range(batch)
    ]
    new = torch.tensor(new_values)[:, :, None, None].expand(batch, -1, h, w)
    out = insert_slices(volume, new, scale)
    assert out.shape == (batch, (slices - 1) * scale + 1, h, w)
    for b in range(batch):
        expected = [100.0 * b + 10.0 * t + u for t in range(slices - 1) for u in range(scale)]
        expected.append(100.0 * b + 10.0 * (slices - 1))
        assert out[b, :, 0, 0].tolist() == expected
    assert torch.equal(out[:, ::scale], volume)


def test_coronal_and_sagittal_images_follow_array_axes() -> None:
    """Coronal image (b, j) is ``V[b, :, j, :]ᵀ`` (W × S); sagittal image (b, k) is ``V[b, :, :, k]ᵀ`` (H × S)."""
    batch, slices, h, w = 2, 5, 3, 4
    volume = torch.arange(batch * slices * h * w, dtype=torch.float32).reshape(batch, slices, h, w)
    coronal, sagittal = coronal_images(volume), sagittal_images(volume)
    assert coronal.shape == (batch * h, 1, w, slices)
    assert sagittal.shape == (batch * w, 1, h, slices)
    for b in range(batch):
        for j in range(h):
            assert torch.equal(coronal[b * h + j, 0], volume[b, :, j, :].t())
        for k in range(w):
            assert torch.equal(sagittal[b * w + k, 0], volume[b, :, :, k].t())


def test_view_round_trips_with_non_square_planes() -> None:
    """``from_*`` invert the decompositions for H ≠ W, and also for a changed z length."""
    volume = torch.randn(2, 5, 3, 4)
    assert torch.equal(from_coronal(coronal_images(volume), 2), volume)
    assert torch.equal(from_sagittal(sagittal_images(volume), 2), volume)
    # A z-only operation on the images equals the same operation on the volume's slice axis.
    doubled = volume.repeat_interleave(2, dim=1)
    assert torch.equal(from_coronal(coronal_images(volume).repeat_interleave(2, dim=-1), 2), doubled)
    assert torch.equal(from_sagittal(sagittal_images(volume).repeat_interleave(2, dim=-1), 2), doubled)


@pytest.mark.parametrize("scale", (2, 3))
def test_interpolate_coronal_and_sagittal(fixed_seed: int, scale: int) -> None:
    """Volume-level PInt: shape ``(B, r(S−1)+1, H, W)``, originals exact, and each view equals PInt run on that
    single image."""
    pint = lite_pint(scale, gammas=0.3).eval()
    volume = torch.rand(2, 4, 5, 3)
    with torch.no_grad():
        coronal = interpolate_coronal(pint, volume)
        sagittal = interpolate_sagittal(pint, volume)
        single_coronal = pint(volume[1, :, 2, :].t()[None, None])[0, 0].t()
        single_sagittal = pint(volume[0, :, :, 1].t()[None, None])[0, 0].t()
    length = scale * 3 + 1
    assert coronal.shape == sagittal.shape == (2, length, 5, 3)
    assert torch.equal(coronal[:, ::scale], volume)
    assert torch.equal(sagittal[:, ::scale], volume)
    torch.testing.assert_close(coronal[1, :, 2, :], single_coronal, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sagittal[0, :, :, 1], single_sagittal, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(coronal, sagittal)  # the two views really are different images


@pytest.mark.parametrize("scale", SCALES)
def test_interpolate_axial_pads_and_orders(fixed_seed: int, scale: int) -> None:
    """Sizes that are not multiples of 8 are reflection-padded and cropped back; pairs come out in z order."""
    sint = lite_sint(scale).eval()
    volume = torch.rand(2, 3, 13, 20)
    with torch.no_grad():
        new, compactness, separateness = interpolate_axial(sint, volume)
        padded = F.pad(volume, (0, 4, 0, 3), mode="reflect")
        pair_one = sint(padded[:, 1:2], padded[:, 2:3]).slices[..., :13, :20]
        pair_zero = sint(padded[:, 0:1], padded[:, 1:2]).slices[..., :13, :20]
    assert new.shape == (2, 2 * (scale - 1), 13, 20)
    assert compactness is None and separateness is None
    torch.testing.assert_close(new[:, : scale - 1], pair_zero, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new[:, scale - 1 :], pair_one, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "scale, shape",
    [
        (2, (1, 4, 9, 13)),  # padding 7 of 9 rows and 3 of 13 columns, up to 16 × 16 (reflect)
        (3, (2, 3, 3, 5)),  # smaller than two blocks: padded to 16 × 16 (replicate)
    ],
)
def test_interpolate_axial_small_planes_keep_their_shape(fixed_seed: int, scale: int, shape: tuple) -> None:
    """Planes that are not multiples of the block, or smaller than two blocks, are padded and cropped back."""
    sint = lite_sint(scale).eval()
    batch, slices, height, width = shape
    with torch.no_grad():
        new, _, _ = interpolate_axial(sint, torch.rand(*shape))
    assert new.shape == (batch, (slices - 1) * (scale - 1), height, width)
    assert torch.isfinite(new).all()


def test_interpolate_axial_training_returns_losses(fixed_seed: int) -> None:
    """In training mode the call's memory losses are passed through."""
    sint = lite_sint(2).train()
    new, compactness, separateness = interpolate_axial(sint, torch.rand(1, 3, 16, 16))
    assert new.shape == (1, 2, 16, 16)
    assert compactness is not None and compactness.ndim == 0
    assert separateness is not None and separateness.ndim == 0


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 6])
def test_linear_residual_nets_start_as_linear_interpolation(scale: int) -> None:
    """With a linear residual base an untrained model is exactly linear interpolation in every view."""
    from dataclasses import replace

    from CTSliceSynthesisLib.nets import SynthesisNetworks

    networks = SynthesisNetworks(replace(model_config("lite", scale), base="linear")).eval()
    first, second = torch.rand(2, 1, 16, 24), torch.rand(2, 1, 16, 24)
    with torch.no_grad():
        slices = networks.sint(first, second).slices
        for u in range(scale - 1):
            t = (u + 1) / scale
            torch.testing.assert_close(slices[:, u : u + 1], (1 - t) * first + t * second)
        images = torch.rand(3, 1, 10, 6)
        out = networks.pint(images)
    columns = torch.arange(out.shape[-1]) / scale
    left = columns.floor().long().clamp(max=images.shape[-1] - 2)
    weight = columns - left
    expected = images[..., left] * (1 - weight) + images[..., left + 1] * weight
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 6])
def test_lite_nets_start_as_cubic_interpolation(scale: int) -> None:
    """The lite preset corrects cubic B-spline interpolation: untrained, every view equals the z-only cubic
    baseline, and whole-volume synthesis (chunked, with cubic context) matches ``upsample_cubic`` to 0.02 HU."""
    from CTSliceSynthesisLib.core.interpolation import upsample_cubic
    from CTSliceSynthesisLib.inference.model_store import SynthesisModel
    from CTSliceSynthesisLib.inference.synthesis import synthesize_volume
    from CTSliceSynthesisLib.nets import SynthesisNetworks
    from CTSliceSynthesisLib.nets.views import interpolate_axial, interpolate_coronal, new_positions

    config = model_config("lite", scale)
    assert config.residual and config.base == "cubic" and model_config("paper", scale).base == "linear"
    networks = SynthesisNetworks(config).eval()
    volume = torch.rand(1, 7, 16, 24)
    reference = torch.from_numpy(upsample_cubic(volume[0].numpy(), scale, axis=0))[None]
    synthesized = new_positions(reference.shape[1], scale)
    with torch.no_grad():
        axial, _, _ = interpolate_axial(networks.sint, volume)
        coronal = interpolate_coronal(networks.pint, volume)
    torch.testing.assert_close(axial, reference[:, synthesized], atol=1e-5, rtol=0)
    torch.testing.assert_close(coronal, reference, atol=1e-5, rtol=0)

    hu = np.random.default_rng(scale).uniform(-1000, 2000, size=(40, 24, 16)).astype(np.float32)
    model = SynthesisModel(networks=networks, model_id="untrained", sha256=None, device=torch.device("cpu"))
    out = synthesize_volume(hu, scale, model, axis=0).volume
    expected = np.clip(upsample_cubic(hu, scale, axis=0), -1024, 3072)  # synthesis clips to the networks' range
    np.testing.assert_allclose(out, expected, atol=0.02, rtol=0)
