"""The evaluation harness: SSIM and PSNR maths, the extra baselines, evaluate_volume, the report and the
``evaluate`` command end to end, on tiny volumes and untrained lite models (which start as cubic interpolation)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from CTSliceSynthesisLib import cli
from CTSliceSynthesisLib.evaluation import metrics
from CTSliceSynthesisLib.core.interpolation import (
    lanczos3_weights,
    mirror_index,
    upsample_lanczos3,
    upsample_nearest,
)
from CTSliceSynthesisLib.core.errors import InputError
from CTSliceSynthesisLib.core.intensity import hu_to_unit
from CTSliceSynthesisLib.evaluation.figures import ReformatCrops, save_evaluation_figure
from CTSliceSynthesisLib.evaluation.report import anatomical_plane, markdown_report, summarise, write_report
from CTSliceSynthesisLib.evaluation.scoring import ABLATIONS, BASELINES, METRICS, evaluate_volume, simulate_thick
from CTSliceSynthesisLib.inference.model_store import create_model, save_model

SHAPE = (40, 48, 17)
SPACING = (0.8, 0.8, 1.5)


def ct_like(shape=SHAPE, seed=0) -> np.ndarray:
    """Smooth HU structure varying along every axis, plus noise (int16)."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    volume = 600 * np.sin(grids[0] * 2) * np.cos(grids[1] * 3) + 300 * np.sin(grids[2] * 2) + rng.normal(0, 30, shape)
    return volume.astype(np.int16)


# --- SSIM -------------------------------------------------------------------------------------------------------


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """SSIM written out in numpy: explicit 11×11 window sums over a zero-padded image (no separability)."""
    taps = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    window = np.outer(taps, taps) / taps.sum() ** 2

    def filtered(image: np.ndarray) -> np.ndarray:
        padded = np.pad(image, 5)
        out = np.zeros_like(image)
        for i in range(11):
            for j in range(11):
                out += window[i, j] * padded[i : i + image.shape[0], j : j + image.shape[1]]
        return out

    mx, my = filtered(x), filtered(y)
    vx, vy, cxy = filtered(x * x) - mx**2, filtered(y * y) - my**2, filtered(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(ssim_map.mean())


def test_ssim_matches_a_direct_numpy_computation() -> None:
    rng = np.random.default_rng(3)
    x = rng.random((23, 17))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    assert metrics.ssim_2d(y, x) == pytest.approx(reference_ssim(y, x), abs=1e-12)


def test_ssim_of_two_constant_images_has_its_closed_form() -> None:
    """Constants a, b: with the zero padding, the window mass inside the image S(p) enters the map, which is
    ((2abS² + C1)(2abS(1 − S) + C2)) / (((a² + b²)S² + C1)((a² + b²)S(1 − S) + C2))."""
    a, b, shape = 0.3, 0.5, (20, 15)
    taps = np.exp(-((np.arange(11) - 5) ** 2) / 4.5)
    taps /= taps.sum()
    inside = [np.array([taps[max(0, 5 - p) : 5 + min(n - p, 6)].sum() for p in range(n)]) for n in shape]
    mass = np.outer(*inside)
    c1, c2, spread = 0.01**2, 0.03**2, mass * (1 - mass)
    expected = ((2 * a * b * mass**2 + c1) * (2 * a * b * spread + c2)) / (
        ((a * a + b * b) * mass**2 + c1) * ((a * a + b * b) * spread + c2)
    )
    assert metrics.ssim_2d(np.full(shape, a), np.full(shape, b)) == pytest.approx(expected.mean(), abs=1e-12)
    # Far from the borders S = 1 and the map is the luminance term alone.
    assert expected[10, 7] == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), abs=1e-9)


def test_ssim_is_one_for_identical_images_and_symmetric() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.random((12, 30)), rng.random((12, 30))
    assert metrics.ssim_2d(x, x) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim_2d(x, y) == pytest.approx(metrics.ssim_2d(y, x), abs=1e-12)
    assert metrics.ssim_2d(x, y) < 0.2


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_ssim_views_average_the_right_images_in_chunks(axis: int, monkeypatch) -> None:
    monkeypatch.setattr(metrics, "SSIM_PIXELS_PER_CHUNK", 700)  # a few images per batch, uneven last batch
    truth = ct_like((13, 11, 9)).astype(np.float32)
    prediction = truth + np.random.default_rng(5).normal(0, 60, truth.shape).astype(np.float32)
    scores = metrics.ssim_views(prediction, truth, axis)

    def mean_over(fixed: int) -> float:
        p, t = hu_to_unit(np.moveaxis(prediction, fixed, 0)), hu_to_unit(np.moveaxis(truth, fixed, 0))
        return float(np.mean([reference_ssim(a.astype(np.float64), b.astype(np.float64)) for a, b in zip(p, t)]))

    first, second = [a for a in range(3) if a != axis]
    assert scores["ssim_a"] == pytest.approx(mean_over(axis), abs=1e-10)
    assert scores["ssim_c"] == pytest.approx(mean_over(first), abs=1e-10)
    assert scores["ssim_s"] == pytest.approx(mean_over(second), abs=1e-10)
    assert scores["ssim_mean"] == pytest.approx(np.mean([scores[k] for k in ("ssim_a", "ssim_c", "ssim_s")]))
    assert metrics.ssim_views(truth, truth, axis)["ssim_mean"] == pytest.approx(1.0, abs=1e-12)


# --- PSNR -------------------------------------------------------------------------------------------------------


def test_psnr_of_a_known_offset() -> None:
    truth = np.zeros((6, 5, 4))
    assert metrics.psnr(truth + 40.96, truth) == pytest.approx(40.0, abs=1e-9)  # 0.01 of the 4096 HU range
    assert metrics.psnr(truth, truth) == math.inf


def test_saint_psnr_scores_synthesized_slices_in_the_central_region_only() -> None:
    truth = np.zeros((400, 64, 9), dtype=np.float32)
    prediction = truth.copy()
    prediction[:128, :, 1] += 4000  # outside rows 128:384 of the ≥384 axis: ignored
    prediction[:, :, 2] += 400  # an acquired slice (×2): ignored
    assert metrics.saint_psnr(prediction, truth, 2, axis=2) == math.inf
    prediction[200, 10, 3] += 400  # 0.1 on SAINT's 4000 HU scale, one voxel of 256 × 64 × 4 scored
    expected = 10 * np.log10(1 / (0.1**2 / (256 * 64 * 4)))
    assert metrics.saint_psnr(prediction, truth, 2, axis=2) == pytest.approx(expected, abs=1e-9)


def test_saint_psnr_clips_to_its_own_range() -> None:
    truth = np.full((5, 6, 7), -1024.0)
    prediction = np.full((5, 6, 7), -3000.0)  # clipped to 0 like the truth
    assert metrics.saint_psnr(prediction, truth, 3, axis=1) == math.inf
    prediction[:, 1] = -624.0  # +400 HU = 0.1 on every voxel of synthesized slice 1
    assert metrics.saint_psnr(prediction, truth, 3, axis=1) == pytest.approx(10 * np.log10(1 / (0.01 / 4)))


# --- baselines --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", [upsample_nearest, upsample_lanczos3])
@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_new_baselines_keep_the_acquired_slices(method, scale: int, axis: int) -> None:
    volume = np.moveaxis(ct_like((6, 7, 5)), 2, axis)
    output = method(volume, scale, axis)
    assert output.dtype == np.float32
    assert output.shape[axis] == (volume.shape[axis] - 1) * scale + 1
    assert np.array_equal(np.take(output, np.arange(0, output.shape[axis], scale), axis=axis), volume)


def test_nearest_takes_the_nearer_slice_and_the_earlier_on_ties() -> None:
    ramp = np.arange(4, dtype=np.float32)[:, None, None]
    assert upsample_nearest(ramp, 2, 0).ravel().tolist() == [0, 0, 1, 1, 2, 2, 3]
    assert upsample_nearest(ramp, 3, 0).ravel().tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 3, 3]
    assert upsample_nearest(ramp, 4, 0).ravel().tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3]


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_lanczos3_nearly_reproduces_a_ramp_inside_and_exactly_a_constant(scale: int) -> None:
    samples = 12
    ramp = (10.0 * np.arange(samples))[:, None, None] * np.ones((1, 2, 3))
    output = upsample_lanczos3(ramp, scale, 0)[:, 0, 0]
    positions = 10.0 * np.arange(len(output)) / scale
    inside = slice(2 * scale, -3 * scale)  # all six taps within the samples
    assert np.max(np.abs(output[inside] - positions[inside])) < 0.25  # < 2.5 % of a slice step (windowed sinc)
    assert np.allclose(upsample_lanczos3(np.full((3, 2, 2), 700.0), scale, 0), 700.0, atol=1e-4)
    for phase in range(1, scale):
        assert lanczos3_weights(phase / scale).sum() == pytest.approx(1.0)


def test_lanczos3_matches_a_direct_sum_with_mirrored_samples() -> None:
    samples = np.array([0.0, 5.0, -3.0, 8.0])
    output = upsample_lanczos3(samples[:, None, None], 2, 0)[:, 0, 0]
    mirrored = samples[[2, 1, 0, 1, 2, 3, 2, 1]]  # index −2 … 5
    weights = lanczos3_weights(0.5)
    expected = [float(weights @ mirrored[k : k + 6]) for k in range(3)]
    assert np.allclose(output[1::2], expected, atol=1e-5)
    assert mirror_index(np.arange(-4, 9), 4).tolist() == [2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1, 2]
    two = upsample_lanczos3(samples[:2, None, None], 3, 0).ravel()  # mirrored: 0, 5, 0, 5, 0, 5 around the gap
    assert two[1] == pytest.approx(lanczos3_weights(1 / 3) @ [0, 5, 0, 5, 0, 5], abs=1e-5)
    assert two[1] + two[2] == pytest.approx(5.0, abs=1e-5)


# --- evaluate_volume --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4])
def test_an_untrained_lite_model_scores_as_cubic_interpolation(scale: int) -> None:
    """Every view of an untrained lite model is cubic interpolation, so are "ours" (eq. 7) and the view
    ablations; the calibrated row mixes cubic and linear, so it lies between them or above."""
    result = evaluate_volume(ct_like(), scale, create_model("lite", scale), axis=2, ablations=True)
    methods = result["methods"]
    assert list(methods) == list(BASELINES) + list(ABLATIONS) + ["ours"]
    for name in [*ABLATIONS, "ours"]:
        if name == "calibrated":
            continue
        for metric in ("psnr_all", "psnr_synthesized", "saint_psnr"):
            assert methods[name][metric] == pytest.approx(methods["cubic"][metric], abs=0.01)
        assert methods[name]["ssim_mean"] == pytest.approx(methods["cubic"]["ssim_mean"], abs=1e-4)
    worse = min(methods["linear"]["psnr_synthesized"], methods["cubic"]["psnr_synthesized"])
    assert methods["calibrated"]["psnr_synthesized"] >= worse - 0.01
    for name, scores in methods.items():
        extra = {"adapt_seconds", "adapted_steps"} if name == "ours" else set()
        assert set(scores) == set(METRICS) | {"seconds"} | extra
        assert scores["psnr_all"] > scores["psnr_synthesized"]  # the exact acquired slices count in the first
    assert methods["linear"]["psnr_all"] > methods["nearest"]["psnr_all"]
    assert result["truth_shape"] == [40, 48, 17] and result["thick_shape"] == [40, 48, (16 // scale) + 1]
    assert result["synthesized_slices"] == 16 // scale * (scale - 1)
    assert result["models"]["ours"]["id"] == f"untrained-lite-x{scale}"
    json.dumps(result, allow_nan=False)


def test_evaluate_volume_compare_row_blur_noise_and_sink() -> None:
    kept = {}
    volume = np.moveaxis(ct_like(), 2, 0)
    result = evaluate_volume(
        volume, 3, create_model("lite", 3), axis=0, degradation="blur-noise", methods=("cubic",), seed=7,
        compare_model=create_model("lite", 3), with_disagreement=True, sink=lambda name, v: kept.setdefault(name, v),
    )
    assert list(result["methods"]) == ["cubic", "ours", "compare"]
    assert set(result["models"]) == {"ours", "compare"}
    assert set(kept) == {"truth", "cubic", "ours", "disagreement", "compare"}
    assert kept["truth"].shape == (16, 40, 48) and kept["disagreement"].shape == (16, 40, 48)
    truth, thick = simulate_thick(volume, 3, 0, "blur-noise", seed=7)
    assert np.array_equal(kept["ours"][::3], thick)  # the acquired slices are the blurred, noisy ones
    assert not np.allclose(thick, truth[::3], atol=5)
    assert not np.array_equal(simulate_thick(volume, 3, 0, "blur-noise", seed=8)[1], thick)


def test_evaluate_volume_refusals() -> None:
    with pytest.raises(InputError, match="unknown method"):
        evaluate_volume(ct_like(), 2, None, axis=2, methods=("bicubic",))
    with pytest.raises(InputError, match="need a model"):
        evaluate_volume(ct_like(), 2, None, axis=2, ablations=True)
    with pytest.raises(InputError, match="at least 5 slices"):
        evaluate_volume(ct_like((8, 8, 4)), 4, None, axis=2)
    with pytest.raises(InputError, match="trained for ×3, not ×2"):
        evaluate_volume(ct_like(), 2, create_model("lite", 2), axis=2, compare_model=create_model("lite", 3))
    with pytest.raises(InputError, match="unknown degradation"):
        evaluate_volume(ct_like(), 2, None, axis=2, degradation="gaussian")
    assert list(evaluate_volume(ct_like(), 2, None, axis=2)["methods"]) == list(BASELINES)


# --- report and figures -----------------------------------------------------------------------------------------


def fake_report() -> dict:
    """Two volumes at ×2 and one at ×4 with round numbers."""

    def evaluation(scale: int, ours: float, linear: float, cubic: float) -> dict:
        def row(psnr: float) -> dict:
            return {**{m: 0.9 for m in METRICS}, "psnr_all": psnr, "psnr_synthesized": psnr - 3, "seconds": 1.0}

        return {
            "scale": scale, "axis": 2, "degradation": "direct", "seed": 0, "truth_shape": [4, 4, 5],
            "thick_shape": [4, 4, 3], "synthesized_slices": 2, "models": {},
            "methods": {"linear": row(linear), "cubic": row(cubic), "ours": row(ours)},
        }

    volume = {"shape": [4, 4, 5], "spacing_mm": [1, 1, 2], "axis": 2, "planes": {"c": "sagittal", "s": "coronal"}}
    volumes = [
        {**volume, "name": "a.nii.gz", "evaluations": [evaluation(2, 40.0, 38.0, 39.0), evaluation(4, 35, 36, 34)]},
        {**volume, "name": "b.nii.gz", "evaluations": [evaluation(2, 41.0, 40.5, 40.0)]},
    ]
    return {"volumes": volumes, "summary": summarise(volumes)}


def test_summary_margins_over_the_better_classical_method() -> None:
    summary = fake_report()["summary"]
    margins = [(row["volume"], row["scale"], row["margin_psnr_all"]) for row in summary["per_volume"]]
    assert margins == [("a.nii.gz", 2, 1.0), ("a.nii.gz", 4, -1.0), ("b.nii.gz", 2, 0.5)]
    assert summary["mean_per_scale"]["direct x2"] == {
        "degradation": "direct", "scale": 2, "volumes": 2,
        "margin_psnr_all": 0.75, "margin_psnr_synthesized": 0.75, "margin_ssim_mean": 0.0,
    }
    assert summary["mean_per_scale"]["direct x4"]["margin_psnr_synthesized"] == -1.0
    assert [row["seconds"] for row in summary["per_volume"]] == [1.0, 1.0, 1.0]


def test_report_files(tmp_path: Path) -> None:
    report = fake_report()
    report["volumes"][0]["evaluations"][0]["methods"]["ours"]["psnr_all"] = math.inf
    markdown, data = write_report(tmp_path, report)
    loaded = json.loads(data.read_text())
    assert loaded["volumes"][0]["evaluations"][0]["methods"]["ours"]["psnr_all"] is None
    text = markdown.read_text()
    assert text == markdown_report(report)
    assert "| **mean of 2** | direct | ×2 | **+0.75** | **+0.75** | **+0.0000** | |" in text
    assert "| b.nii.gz | direct | ×2 | +0.50 | +0.50 | +0.0000 | 1.0, 0.0 |" in text
    assert "| ours | **inf** |" in text and text.count("### ×") == 3


def test_anatomical_plane_names_follow_the_affine() -> None:
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    assert [anatomical_plane(affine, a) for a in range(3)] == ["sagittal", "coronal", "axial"]
    permuted = affine[:, [2, 0, 1, 3]]  # voxel axis 0 runs along z
    assert anatomical_plane(permuted, 0) == "axial"


def test_reformat_crops_are_physically_square(tmp_path: Path) -> None:
    crops = ReformatCrops(axis=0, spacing=(2.0, 0.5, 0.5))
    volume = np.random.default_rng(0).normal(0, 100, (100, 200, 150)).astype(np.float32)
    for name in ("truth", "cubic", "ours", "disagreement", "linear"):
        crops(name, volume)
    assert set(crops.crops[1]) == {"truth", "cubic", "ours", "disagreement"}
    assert crops.crops[1]["truth"].shape == (32, 128)  # 128 px × 0.5 mm = 64 mm = 32 slices of 2 mm
    assert crops.crops[2]["truth"].shape == (32, 128)
    assert np.array_equal(crops.crops[1]["truth"], volume[34:66, 100, 11:139])
    assert crops.aspect(1) == 4.0
    scores = {name: {"psnr_all": 30.0, "psnr_synthesized": 28.0} for name in ("cubic", "ours")}
    path = tmp_path / "figure.png"
    save_evaluation_figure(path, crops, scores, "test ×2", {1: "coronal", 2: "sagittal"})
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the evaluate command ---------------------------------------------------------------------------------------


@pytest.fixture
def inputs(tmp_path: Path) -> dict:
    """A tiny thin-slice NIfTI in a folder and untrained lite checkpoints for ×2 and ×3."""
    folder = tmp_path / "thin"
    folder.mkdir()
    volume = folder / "tiny.nii.gz"
    nib.save(nib.Nifti1Image(ct_like(), np.diag(SPACING + (1.0,))), str(volume))
    checkpoints = {}
    for scale in (2, 3):
        checkpoints[scale] = tmp_path / f"lite_x{scale}.pt"
        save_model(create_model("lite", scale), checkpoints[scale])
    return {"folder": folder, "volume": volume, "models": checkpoints, "out": tmp_path / "report"}


def test_evaluate_command_without_figures(inputs: dict, capsys) -> None:
    argv = ["evaluate", "--input", str(inputs["volume"]), "--scale", "3", "2", "--output-dir", str(inputs["out"])]
    argv += ["--model", str(inputs["models"][2]), str(inputs["models"][3]), "--no-figures", "--device", "cpu"]
    argv += ["--adapt-seconds", "0"]  # on by default: "ours" would then be an adapted model
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    report = json.loads((inputs["out"] / "evaluation.json").read_text())
    assert captured.out == (inputs["out"] / "evaluation.md").read_text()
    assert "[1/1] tiny.nii.gz" in captured.err and "cubic: PSNR" in captured.err
    assert not (inputs["out"] / "figures").exists()
    volume = report["volumes"][0]
    assert volume["axis"] == 2 and volume["planes"] == {"c": "sagittal", "s": "coronal"}
    assert [e["scale"] for e in volume["evaluations"]] == [2, 3]
    assert set(report["summary"]["mean_per_scale"]) == {"direct x2", "direct x3"}
    for evaluation in volume["evaluations"]:
        assert list(evaluation["methods"]) == list(BASELINES) + ["ours"]
        ours, cubic = evaluation["methods"]["ours"], evaluation["methods"]["cubic"]
        assert ours["psnr_all"] == pytest.approx(cubic["psnr_all"], abs=0.01)


def test_evaluate_command_with_figures_ablations_and_compare(inputs: dict, capsys) -> None:
    argv = ["evaluate", "--input", str(inputs["folder"]), "--scale", "2", "--output-dir", str(inputs["out"])]
    argv += ["--model", str(inputs["models"][2]), "--compare-model", str(inputs["models"][2]), "--ablations"]
    argv += ["--degradation", "blur-noise", "--device", "cpu", "--adapt-seconds", "0"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    assert (inputs["out"] / "figures" / "tiny_x2_blur-noise.png").stat().st_size > 10_000
    evaluation = json.loads((inputs["out"] / "evaluation.json").read_text())["volumes"][0]["evaluations"][0]
    assert list(evaluation["methods"]) == list(BASELINES) + list(ABLATIONS) + ["ours", "compare"]
    assert evaluation["degradation"] == "blur-noise"


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a, i: a + ["--model", str(i["models"][3])], "is a ×3 model but --scale is 2"),
        (lambda a, i: a + ["--model", str(i["models"][2]), str(i["models"][2])], "two ×2 models"),
        (lambda a, i: [x if x != "2" else "7" for x in a], "unsupported scale 7"),
        (lambda a, i: [x if x != str(i["volume"]) else str(i["volume"]) + ".missing" for x in a], "not found"),
        (lambda a, i: a + ["--model", str(i["volume"])], "tiny.nii.gz"),
        (lambda a, i: a + ["--axis", "up"], "--axis must be"),
    ],
)
def test_evaluate_command_refusals_are_one_line(inputs: dict, capsys, change, message: str) -> None:
    argv = ["evaluate", "--input", str(inputs["volume"]), "--scale", "2", "--output-dir", str(inputs["out"])]
    assert cli.main(change(argv, inputs)) == cli.EXIT_ERROR
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("ct-slice-synthesis: error:") and message in error
