"""Speed settings: precision choice, channels-last layout, allocator tuning, and that none changes the result
beyond bf16 rounding (acquired slices stay bit-exact)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from CTSliceSynthesisLib.core.errors import CheckpointError
from CTSliceSynthesisLib.core.interpolation import upsample_cubic
from CTSliceSynthesisLib.inference import precision as performance
from CTSliceSynthesisLib.inference.model_store import create_model
from CTSliceSynthesisLib.inference.precision import precision_name, resolve_precision, use_channels_last
from CTSliceSynthesisLib.inference.synthesis import synthesize_volume

from test_engine_inference import ct_like, trained_like

CPU = torch.device("cpu")


def corrected_model(scale: int):
    """A random lite model whose residual corrections are non-zero (a fresh one starts as cubic exactly)."""
    model = trained_like(scale)
    generator = torch.Generator().manual_seed(scale)
    with torch.no_grad():
        for conv in (model.networks.sint.decoder_tail, model.networks.pint.head_out):
            conv.weight.copy_(0.02 * torch.randn(conv.weight.shape, generator=generator))
    return model


def test_fp32_is_no_autocast() -> None:
    assert resolve_precision("fp32", CPU) is None
    assert precision_name(None) == "fp32"


def test_auto_on_cpu_follows_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(performance, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", CPU) is torch.bfloat16
    monkeypatch.setattr(performance, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", CPU) is None


def test_auto_on_apple_gpu_stays_float32() -> None:
    assert resolve_precision("auto", torch.device("mps")) is None


def test_explicit_precisions_and_refusals() -> None:
    assert resolve_precision("bf16", CPU) is torch.bfloat16
    with pytest.raises(ValueError, match="fp16 is not supported on the CPU"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        resolve_precision("int8", CPU)


def test_bad_precision_is_a_one_line_checkpoint_error() -> None:
    with pytest.raises(CheckpointError, match="fp16 is not supported on the CPU"):
        create_model("lite", 2, precision="fp16")


def test_channels_last_weights_and_activation_layout() -> None:
    model = create_model("lite", 2)
    use_channels_last(model.networks)
    pint = model.networks.pint
    assert pint.memory_format is torch.channels_last and model.networks.sint.memory_format is torch.channels_last
    assert pint.groups[0].body[0].body[0].weight.is_contiguous(memory_format=torch.channels_last)
    features = []
    pint.groups[0].register_forward_hook(lambda module, args, out: features.append(out))
    with torch.no_grad():
        pint(torch.rand(2, 1, 12, 7))
    assert features[0].is_contiguous(memory_format=torch.channels_last) and not features[0].is_contiguous()


def test_channels_last_does_not_change_the_result() -> None:
    volume = ct_like((9, 40, 24))
    plain = corrected_model(2)
    reference = synthesize_volume(volume.astype(np.float32), 2, plain, axis=0).volume
    for module in plain.networks.modules():  # back to the plain layout
        if isinstance(module, torch.nn.Conv2d):
            module.weight.data = module.weight.data.contiguous()
        if hasattr(module, "memory_format"):
            module.memory_format = torch.contiguous_format
    contiguous = synthesize_volume(volume.astype(np.float32), 2, plain, axis=0).volume
    cubic = upsample_cubic(volume.astype(np.float32), 2, axis=0)
    assert np.abs(reference - cubic).max() > 1.0  # the nets' corrections are part of what is compared
    np.testing.assert_allclose(reference, contiguous, atol=0.05)


@pytest.mark.skipif(not performance.cpu_has_native_bf16(), reason="this CPU has no native bf16")
@pytest.mark.parametrize("scale", [2, 4])
def test_bf16_keeps_acquired_slices_exact_and_stays_close(scale: int) -> None:
    """bf16 convolutions move synthesized voxels by a few HU at most; acquired slices are still copied."""
    volume = ct_like((7, 48, 32)).astype(np.int16)
    fp32, bf16 = corrected_model(scale), corrected_model(scale)
    bf16.precision = torch.bfloat16
    reference = synthesize_volume(volume, scale, fp32, axis=0).volume
    fast = synthesize_volume(volume, scale, bf16, axis=0).volume
    assert np.array_equal(fast[::scale], volume)
    difference = np.abs(fast.astype(np.int32) - reference.astype(np.int32))
    assert difference.max() > 0  # bf16 did run
    assert np.sqrt(np.mean(difference.astype(np.float64) ** 2)) < 5.0


def test_allocator_tuning_is_idempotent() -> None:
    first = performance.tune_allocator()
    assert performance.tune_allocator() == first
