"""Loss terms (spec §5–7) against hand/PyWavelets computations, and the full objective in both loss modes."""

from __future__ import annotations

import dataclasses

import copy
import warnings
from typing import Dict, List

import numpy as np
import pytest
import pywt
import torch

from CTSliceSynthesisLib.core.config import model_config
from CTSliceSynthesisLib.nets import MemoryBank, SynthesisNetworks
from CTSliceSynthesisLib.training.losses import WaveletDetailLoss, pixel_loss, truncated_consistency
from CTSliceSynthesisLib.training.objective import LossConfig, TrainingObjective
from CTSliceSynthesisLib.nets.views import (
    insert_slices,
    interpolate_axial,
    interpolate_coronal,
    interpolate_sagittal,
    new_positions,
)


@pytest.fixture(scope="module")
def wavelet() -> WaveletDetailLoss:
    """One DWT loss module for the whole file."""
    return WaveletDetailLoss()


# --------------------------------------------------------------------------------------------------------------
# Wavelet detail loss


def wavedec2(plane: np.ndarray, levels: int = 3) -> list:
    """``pywt.wavedec2`` with db3 / zero mode, without its "boundary effects" notice for small planes."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return pywt.wavedec2(plane, "db3", mode="zero", level=levels)


def pywt_detail_loss(prediction: np.ndarray, target: np.ndarray, levels: int = 3) -> float:
    """Spec §5 with PyWavelets: db3, zero mode, 3 levels on every axial plane; detail bands (cH, cV, cD);
    per level the mean of squared differences over all planes and bands; summed over levels."""
    sums = [0.0] * levels
    counts = [0] * levels
    for b in range(prediction.shape[0]):
        for s in range(prediction.shape[1]):
            pred = wavedec2(prediction[b, s], levels)
            targ = wavedec2(target[b, s], levels)
            for level in range(levels):  # wavedec2 lists the coarsest details first
                for band_p, band_t in zip(pred[levels - level], targ[levels - level]):
                    sums[level] += float(((band_p - band_t) ** 2).sum())
                    counts[level] += band_p.size
    return sum(total / n for total, n in zip(sums, counts))


def test_wavelet_loss_zero_on_equal_inputs(wavelet: WaveletDetailLoss, fixed_seed: int) -> None:
    """Identical stacks give exactly zero."""
    x = torch.rand(2, 3, 20, 18)
    assert wavelet(x, x.clone()).item() == 0.0


def test_wavelet_bands_match_pywt(wavelet: WaveletDetailLoss, fixed_seed: int) -> None:
    """pytorch_wavelets' (LH, HL, HH) of level t are pywt's (cH, cV, cD), with pywt's zero-mode sizes
    ``⌊(n + 5)/2⌋`` per level (spec §5)."""
    plane = np.random.RandomState(3).rand(20, 17)
    _, details = wavelet.transform(torch.from_numpy(plane).float()[None, None])
    reference = wavedec2(plane)
    h, w = 20, 17
    for level in range(3):
        h, w = (h + 5) // 2, (w + 5) // 2
        ours = details[level][0, 0]
        assert ours.shape == (3, h, w)
        for band in range(3):
            assert reference[3 - level][band].shape == (h, w)
            np.testing.assert_allclose(ours[band].numpy(), reference[3 - level][band], atol=1e-5)


def test_wavelet_sizes_for_64() -> None:
    """64 → 34 → 19 → 12 as listed in spec §5."""
    _, details = WaveletDetailLoss().transform(torch.zeros(1, 1, 64, 64))
    assert [tuple(d.shape[-2:]) for d in details] == [(34, 34), (19, 19), (12, 12)]
    assert all(d.shape[2] == 3 for d in details)


def test_wavelet_loss_matches_pywt(wavelet: WaveletDetailLoss, fixed_seed: int) -> None:
    """The loss equals the PyWavelets computation; per-level means (not one global mean) and no low-pass."""
    rng = np.random.RandomState(5)
    prediction, target = rng.rand(2, 3, 20, 17), rng.rand(2, 3, 20, 17)
    ours = wavelet(torch.from_numpy(prediction).float(), torch.from_numpy(target).float()).item()
    expected = pywt_detail_loss(prediction, target)
    assert ours == pytest.approx(expected, rel=1e-5)

    # The reference is discriminating: a single mean over all levels, or adding the low-pass, differ.
    flat_sq, flat_n, low = 0.0, 0, 0.0
    for b in range(2):
        for s in range(3):
            p, t = wavedec2(prediction[b, s]), wavedec2(target[b, s])
            low += float(((p[0] - t[0]) ** 2).mean()) / 6
            for level in range(1, 4):
                for bp, bt in zip(p[level], t[level]):
                    flat_sq += float(((bp - bt) ** 2).sum())
                    flat_n += bp.size
    assert abs(flat_sq / flat_n - ours) > 1e-3 * ours
    assert abs(expected + low - ours) > 1e-3 * ours


def test_wavelet_loss_has_gradient(wavelet: WaveletDetailLoss, fixed_seed: int) -> None:
    """The loss is differentiable w.r.t. the prediction."""
    prediction = torch.rand(1, 2, 16, 16, requires_grad=True)
    wavelet(prediction, torch.rand(1, 2, 16, 16)).backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0


# --------------------------------------------------------------------------------------------------------------
# Truncated consistency (eq. 11–12) and pixel loss

# Differences with squares 9, 1, 0.25, 4 | 0.04, 2.25, 12.25, 0.01 (n = 8).
DIFFS = [[3.0, -1.0, 0.5, 2.0], [-0.2, 1.5, -3.5, 0.1]]


def consistency_pair() -> List[torch.Tensor]:
    """``first − second == DIFFS`` with a non-zero ``second``."""
    second = torch.tensor([[0.3, -0.7, 1.1, 0.2], [0.9, -0.4, 0.6, 0.05]])
    return [second + torch.tensor(DIFFS), second]


def test_truncated_consistency_fraction_hand_example() -> None:
    """γ = 0.3 of n = 8 keeps ⌈2.4⌉ = 3 entries, chosen jointly over the batch: (0.01 + 0.04 + 0.25)/3."""
    first, second = consistency_pair()
    value = truncated_consistency(first, second, fraction=0.3).item()
    assert value == pytest.approx((0.01 + 0.04 + 0.25) / 3, rel=1e-5)
    # Not floor/round (2 entries) and not a per-sample selection (2 per row).
    assert value != pytest.approx((0.01 + 0.04) / 2, rel=1e-3)
    assert value != pytest.approx((0.25 + 1.0 + 0.01 + 0.04) / 4, rel=1e-3)


def test_truncated_consistency_count_and_full() -> None:
    """A fixed count keeps the ``count`` smallest; a count beyond n or γ = 1 is the plain mean."""
    first, second = consistency_pair()
    assert truncated_consistency(first, second, count=5).item() == pytest.approx(
        (0.01 + 0.04 + 0.25 + 1.0 + 2.25) / 5, rel=1e-5
    )
    full = 28.8 / 8
    assert truncated_consistency(first, second, count=100).item() == pytest.approx(full, rel=1e-5)
    assert truncated_consistency(first, second, fraction=1.0).item() == pytest.approx(full, rel=1e-5)


def test_truncated_consistency_gradient_only_on_kept() -> None:
    """Gradients reach exactly the kept entries: ``2·diff/k`` there, 0 elsewhere, for both inputs."""
    first, second = (t.clone().requires_grad_(True) for t in consistency_pair())
    truncated_consistency(first, second, fraction=0.3).backward()
    diffs = torch.tensor(DIFFS)
    kept = torch.tensor([[False, False, True, False], [True, False, False, True]])
    expected = torch.where(kept, 2 * diffs / 3, torch.zeros_like(diffs))
    torch.testing.assert_close(first.grad, expected)
    torch.testing.assert_close(second.grad, -expected)


@pytest.mark.parametrize(
    "kwargs", [{}, {"fraction": 0.5, "count": 3}, {"fraction": 0.0}, {"fraction": 1.5}, {"fraction": -0.1}]
)
def test_truncated_consistency_rejects_bad_arguments(kwargs: Dict[str, float]) -> None:
    """Exactly one of fraction/count, and the fraction in (0, 1]."""
    first, second = consistency_pair()
    with pytest.raises(ValueError):
        truncated_consistency(first, second, **kwargs)


def test_pixel_loss_kinds() -> None:
    """MSE and L1 on a hand example; unknown kinds are rejected."""
    prediction = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    target = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    assert pixel_loss(prediction, target, "mse").item() == pytest.approx((1 + 4 + 4 + 0.25) / 4)
    assert pixel_loss(prediction, target).item() == pytest.approx((1 + 4 + 4 + 0.25) / 4)
    assert pixel_loss(prediction, target, "l1").item() == pytest.approx((1 + 2 + 2 + 0.5) / 4)
    with pytest.raises(ValueError):
        pixel_loss(prediction, target, "huber")


# --------------------------------------------------------------------------------------------------------------
# LossConfig and TrainingObjective


@pytest.mark.parametrize(
    "kwargs", [{"mode": "fast"}, {"levels": 0}, {"gamma": 0.0}, {"gamma": 1.01}, {"gamma": -0.25}]
)
def test_loss_config_validation(kwargs: Dict[str, object]) -> None:
    """Unknown modes, fewer than one level and γ outside (0, 1] are rejected."""
    with pytest.raises(ValueError):
        LossConfig(**kwargs)


def test_loss_config_modes() -> None:
    """Paper: MSE, wavelet weight 1, γ = 25 % default; code: L1, wavelet weight 0.1; weights 0.15 and 0.1."""
    paper, code = LossConfig(), LossConfig(mode="code")
    assert (paper.mode, paper.levels, paper.gamma) == ("paper", 2, 0.25)
    assert (paper.pixel_kind, paper.wavelet_weight) == ("mse", 1.0)
    assert (code.pixel_kind, code.wavelet_weight) == ("l1", 0.1)
    assert (paper.cmd_weight, paper.memory_weight) == (0.15, 0.1)
    assert LossConfig(gamma=1.0).gamma == 1.0
    assert paper.distillation == "mutual" and LossConfig(distillation="from-pint").distillation == "from-pint"
    assert paper.to_dict() == {"mode": "paper", "levels": 2, "gamma": 0.25, "cmd_weight": 0.15, "memory_weight": 0.1,
                               "distillation": "mutual"}


SCALE = 2
TERMS = (
    "internal_axial",
    "internal_coronal",
    "internal_sagittal",
    "cmd_coronal",
    "cmd_sagittal",
    "compactness",
    "separateness",
)


@pytest.fixture(scope="module")
def lite_networks() -> SynthesisNetworks:
    """A lite-sized r = 2 model of the authors' kind (no residual, so every head is random), with a fixed seed and
    non-zero LAM/CSAM scales, in training mode; copy before use."""
    torch.manual_seed(11)
    networks = SynthesisNetworks(dataclasses.replace(model_config("lite", SCALE), residual=False))
    with torch.no_grad():
        networks.pint.layer_attention.gamma.fill_(0.2)
        networks.pint.channel_spatial_attention.gamma.fill_(0.2)
    return networks.train()


@pytest.fixture(scope="module")
def volume() -> torch.Tensor:
    """``V (B=1, S=5, 16, 16)`` in [0, 1]."""
    generator = torch.Generator().manual_seed(12)
    return torch.rand(1, 5, 16, 16, generator=generator)


def reference_terms(
    networks: SynthesisNetworks, volume: torch.Tensor, mode: str, levels: int
) -> Dict[str, torch.Tensor]:
    """The loss terms written out from spec §5–7 and the §13 pseudo-code, with the mode-dependent choices
    spelled out here (pixel kind, wavelet weight, PInt internal positions, selection, 1/N)."""
    paper = mode == "paper"
    kind, wavelet_weight = ("mse", 1.0) if paper else ("l1", 0.1)
    wavelet = WaveletDetailLoss()
    r = networks.scale

    def internal(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return pixel_loss(prediction, target, kind) + wavelet_weight * wavelet(prediction, target)

    low = volume[:, ::r]
    synthesized = new_positions(volume.shape[1], r)
    target = volume[:, synthesized]
    axial_new, _, _ = interpolate_axial(networks.sint, low)  # memory update 1
    coronal = interpolate_coronal(networks.pint, low)
    sagittal = interpolate_sagittal(networks.pint, low)
    terms = {"internal_axial": internal(axial_new, target)}
    if paper:  # synthesized positions only
        terms["internal_coronal"] = internal(coronal[:, synthesized], target)
        terms["internal_sagittal"] = internal(sagittal[:, synthesized], target)
    else:  # the code's PInt loss runs over all slices
        terms["internal_coronal"] = internal(coronal, volume)
        terms["internal_sagittal"] = internal(sagittal, volume)

    axial = cor = sag = volume
    cmd_c: List[torch.Tensor] = []
    cmd_s: List[torch.Tensor] = []
    for level in range(1, levels + 1):
        new, compactness, separateness = interpolate_axial(networks.sint, axial)  # memory update 1 + level
        axial = insert_slices(axial, new, r)
        cor, sag = interpolate_coronal(networks.pint, cor), interpolate_sagittal(networks.pint, sag)
        k = new_positions(axial.shape[1], r)
        select = {"fraction": 0.25} if paper else {"count": (5000, 2000)[level - 1]}
        cmd_c.append(truncated_consistency(new, cor[:, k], **select))
        cmd_s.append(truncated_consistency(new, sag[:, k], **select))
    terms["cmd_coronal"] = sum(cmd_c) / (levels if paper else 1)
    terms["cmd_sagittal"] = sum(cmd_s) / (levels if paper else 1)
    terms["compactness"], terms["separateness"] = compactness, separateness  # last call's (level N)
    return terms


@pytest.fixture(scope="module")
def mode_runs(lite_networks: SynthesisNetworks, volume: torch.Tensor) -> Dict[str, Dict[str, object]]:
    """For each loss mode, from the same initial state: the objective's terms, the reference terms, and the
    memory each ended with."""
    runs: Dict[str, Dict[str, object]] = {}
    for mode in ("paper", "code"):
        objective = TrainingObjective(copy.deepcopy(lite_networks), LossConfig(mode=mode), pint_pairs="z")
        reference_networks = copy.deepcopy(lite_networks)
        with torch.no_grad():
            terms = objective(volume)
            expected = reference_terms(reference_networks, volume, mode, levels=2)
        runs[mode] = {
            "terms": terms,
            "expected": expected,
            "memory": objective.networks.sint.memory.items.clone(),
            "reference_memory": reference_networks.sint.memory.items.clone(),
        }
    return runs


@pytest.mark.parametrize("mode", ["paper", "code"])
def test_objective_terms_and_total(mode_runs: Dict[str, Dict[str, object]], mode: str) -> None:
    """Each returned term equals the spec computation for its mode, and ``total`` is their weighted sum."""
    terms, expected = mode_runs[mode]["terms"], mode_runs[mode]["expected"]
    for name in TERMS:
        torch.testing.assert_close(terms[name], expected[name], rtol=1e-5, atol=1e-7, msg=name)
    weighted = (
        terms["internal_axial"]
        + terms["internal_coronal"]
        + terms["internal_sagittal"]
        + 0.15 * (terms["cmd_coronal"] + terms["cmd_sagittal"])
        + 0.1 * (terms["compactness"] + terms["separateness"])
    )
    torch.testing.assert_close(terms["total"], weighted, rtol=1e-6, atol=1e-8)
    # Both runs end with the same memory: three updates in the same order.
    torch.testing.assert_close(
        mode_runs[mode]["memory"], mode_runs[mode]["reference_memory"], atol=1e-6, rtol=1e-5
    )


def test_objective_modes_differ(mode_runs: Dict[str, Dict[str, object]]) -> None:
    """Code and paper modes give different internal and CMD terms from the same state, but the same memory
    losses (those do not depend on the mode)."""
    paper, code = mode_runs["paper"]["terms"], mode_runs["code"]["terms"]
    for name in ("internal_axial", "internal_coronal", "internal_sagittal", "cmd_coronal", "cmd_sagittal"):
        assert not torch.allclose(paper[name], code[name]), name
    torch.testing.assert_close(paper["compactness"], code["compactness"])
    torch.testing.assert_close(paper["separateness"], code["separateness"])


@pytest.mark.parametrize("levels", [1, 2])
def test_memory_updated_once_per_sint_call(
    lite_networks: SynthesisNetworks, volume: torch.Tensor, monkeypatch: pytest.MonkeyPatch, levels: int
) -> None:
    """One objective call updates the memory 1 + N times (internal learning + one per level, spec §3.5)."""
    calls: List[int] = []
    original = MemoryBank.update

    def counting(bank: MemoryBank, queries: torch.Tensor) -> None:
        calls.append(queries.shape[0])
        original(bank, queries)

    monkeypatch.setattr(MemoryBank, "update", counting)
    objective = TrainingObjective(copy.deepcopy(lite_networks), LossConfig(levels=levels), pint_pairs="z")
    with torch.no_grad():
        objective(volume)
    assert len(calls) == 1 + levels
    # Queries per call: pairs × (16/8)² positions; V↓ has 3 slices, V 5, A¹ 9.
    assert calls == [2 * 4, 4 * 4, 8 * 4][: 1 + levels]


def test_objective_gradients_reach_both_networks(
    lite_networks: SynthesisNetworks, volume: torch.Tensor
) -> None:
    """The CMD terms alone train both SInt and PInt (mutual distillation, no stop-gradient); the memory has
    no gradient."""
    objective = TrainingObjective(copy.deepcopy(lite_networks), LossConfig(), pint_pairs="z")
    terms = objective(volume)
    (terms["cmd_coronal"] + terms["cmd_sagittal"]).backward()
    networks = objective.networks
    assert networks.sint.stem.weight.grad is not None and networks.sint.stem.weight.grad.abs().sum() > 0
    assert networks.pint.head.weight.grad is not None and networks.pint.head.weight.grad.abs().sum() > 0
    assert networks.sint.memory.items.grad is None


def test_objective_rejects_bad_window(lite_networks: SynthesisNetworks) -> None:
    """Training windows need S ≡ 1 (mod r)."""
    objective = TrainingObjective(copy.deepcopy(lite_networks), LossConfig(), pint_pairs="z")
    with pytest.raises(ValueError):
        objective(torch.rand(1, 6, 16, 16))


def test_objective_needs_training_mode(lite_networks: SynthesisNetworks, volume: torch.Tensor) -> None:
    """In eval mode SInt returns no memory losses, which the objective reports instead of crashing later."""
    objective = TrainingObjective(copy.deepcopy(lite_networks), LossConfig(), pint_pairs="z").eval()
    with torch.no_grad(), pytest.raises(RuntimeError):
        objective(volume)


def test_ceil_fraction_selection_count() -> None:
    """γ = 25 % keeps ⌈n/4⌉ entries: for n = 10 that is 3 (a hand case for the default γ)."""
    first = torch.arange(10, dtype=torch.float32)
    value = truncated_consistency(first, torch.zeros(10), fraction=0.25).item()
    assert value == pytest.approx((0 + 1 + 4) / 3)
