"""The pipeline's slice geometry (``inference.pipeline.slice_geometry``) and provenance: given, estimated or
assumed thickness, the 80-character description, and both end to end (NIfTI ``descrip``, ``.npy`` without a
spacing refusing to adapt with a warning)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import List

import nibabel as nib
import numpy as np
import pytest
import torch

from cli_harness import ct_volume, save_volume
from conftest import untrained_lite
from CTSliceSynthesisLib.core.geometry import SliceGeometry
from CTSliceSynthesisLib.inference.model_store import create_model, save_model
from CTSliceSynthesisLib.inference.pipeline import Adaptation, PipelineOptions, provenance, run_pipeline, slice_geometry
from CTSliceSynthesisLib.training.profiles import ESTIMATE_RATIOS, estimate_thickness

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (24, 24, 6)  # z last, 4 mm slices of 0.8 mm pixels


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("geometry")
    torch.manual_seed(3)
    save_model(create_model("lite", 2), folder / "lite_x2.pt")
    source = save_volume(folder / "thick.nii.gz", ct_volume(SHAPE, seed=5), spacing=(0.8, 0.8, 4.0))
    return source, folder / "lite_x2.pt"


# --- slice_geometry ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis, spacing", [(0, (3.0, 0.7, 0.9)), (1, (0.7, 3.0, 0.9)), (2, (0.7, 0.9, 3.0)),
                                           (-1, (0.7, 0.9, 3.0))])
def test_a_given_thickness_is_kept_with_its_source(axis: int, spacing) -> None:
    data = np.zeros((4, 4, 4), dtype=np.int16)
    geometry = slice_geometry(data, axis, spacing, 2.5)
    assert geometry == SliceGeometry(3.0, 2.5, "given", (0.7, 0.9))
    assert geometry.thickness_known
    dicom = slice_geometry(data, axis, spacing, 1.25, "dicom")
    assert dicom.thickness_mm == 1.25 and dicom.thickness_source == "dicom" and dicom.thickness_known


def test_without_a_spacing_there_is_no_geometry() -> None:
    assert slice_geometry(np.zeros((4, 4, 4)), 2, None, None) is None
    assert slice_geometry(np.zeros((4, 4, 4)), 2, None, 2.5) is None


@pytest.mark.parametrize("shape", [(24, 24, 5), (24, 24, 13)])
def test_volumes_too_small_to_estimate_fall_back_to_the_spacing(shape) -> None:
    """Too few slices (5), or images too small for the estimate's widest box (13 slices of 24 × 24)."""
    data = ct_volume(shape, seed=1)
    geometry = slice_geometry(data, 2, (0.8, 0.8, 4.0), None)
    assert geometry == SliceGeometry(4.0, 4.0, "spacing", (0.8, 0.8))
    assert not geometry.thickness_known


def test_a_larger_volume_gets_an_estimated_thickness() -> None:
    rng = np.random.default_rng(0)
    shape = (64, 64, 64)  # z last, smoothed more along z, then every 4th slice
    frequencies = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    widths = (1.5, 1.5, 4.0)
    gain = np.exp(-2 * np.pi**2 * sum((w * k) ** 2 for w, k in zip(widths, frequencies)))
    field = np.real(np.fft.ifftn(np.fft.fftn(rng.normal(0, 1, shape)) * gain))
    data = (field / field.std() * 300).astype(np.float32)[:, :, ::4]
    geometry = slice_geometry(data, 2, (0.8, 0.8, 3.2), None)
    assert geometry.thickness_source == "estimated" and not geometry.thickness_known
    assert geometry.spacing_mm == 3.2 and geometry.in_plane_mm == (0.8, 0.8)
    expected = estimate_thickness(np.moveaxis(data, 2, 0), 3.2, (0.8, 0.8))
    assert geometry.thickness_mm == pytest.approx(expected.thickness_mm)
    assert any(geometry.thickness_mm == pytest.approx(r * 3.2) for r in ESTIMATE_RATIOS)


# --- provenance ---------------------------------------------------------------------------------------------------


def test_provenance_names_factor_model_adaptation_and_geometry() -> None:
    model = untrained_lite(2)
    geometry = SliceGeometry(4.0, 2.5, "given", (0.8, 0.8))
    plain = provenance(model, 2, geometry, None)
    assert plain == "CTSS x2 untrained-lite-x2; T=2.50mm(given) dz=4.00mm"
    adapted_model = dataclasses.replace(model, model_id="untrained-lite-x2+adapted12")
    adapted = provenance(adapted_model, 2, geometry, Adaptation(12, 12, 0))
    assert adapted == "CTSS x2 untrained-lite-x2 +adapt12 seed0; T=2.50mm(given) dz=4.00mm"
    capped = provenance(adapted_model, 2, geometry, Adaptation(12, 100, 7, capped=True, cap_seconds=1.0))
    assert capped == "CTSS x2 untrained-lite-x2 +adapt12cap seed7; T=2.50mm(given) dz=4.00mm"
    assert provenance(model, 2, None, None) == "CTSS x2 untrained-lite-x2"
    estimated = provenance(model, 2, SliceGeometry(5.0, 6.5, "estimated", (0.7, 0.7)), None)
    assert "T=6.50mm(estimated) dz=5.00mm" in estimated


def test_the_bundled_model_s_provenance_fits_whole() -> None:
    """The default run's description (bundled weights, the longest thickness source, a capped run with thick
    slices far apart) keeps every field within the 80 bytes of the NIfTI header."""
    bundled = dataclasses.replace(untrained_lite(2), model_id="lite-x2-inplane-3000+adapted100")
    geometry = SliceGeometry(10.0, 12.5, "estimated", (0.7, 0.7))
    for adaptation in (Adaptation(100, 100, 0), Adaptation(37, 100, 0, capped=True, cap_seconds=60.0)):
        text = provenance(bundled, 6, geometry, adaptation)
        assert len(text) <= 80 and text.startswith("CTSS x6 lite-x2-inplane-3000 +adapt"), text
        assert text.endswith(f"seed{adaptation.seed}; T=12.50mm(estimated) dz=10.00mm"), text


def test_provenance_is_cut_to_80_characters() -> None:
    """A model name too long for the field is shortened; adaptation and geometry stay whole."""
    long_id = dataclasses.replace(untrained_lite(2), model_id="a-very-long-checkpoint-name-" * 3)
    text = provenance(long_id, 4, SliceGeometry(4.0, 2.5, "dicom", (0.8, 0.8)), Adaptation(12345, 12345, 0))
    assert len(text) == 80 and text.startswith("CTSS x4 a-very-long")
    assert text.endswith("~ +adapt12345 seed0; T=2.50mm(dicom) dz=4.00mm")


# --- end to end ---------------------------------------------------------------------------------------------------


def description_of(path: Path) -> str:
    return nib.load(str(path)).header["descrip"].tobytes().rstrip(b"\0").decode("ascii")


def test_a_given_thickness_reaches_the_output_header(tmp_path: Path, inputs) -> None:
    source, checkpoint = inputs
    ready = []
    options = PipelineOptions(source, tmp_path / "thin.nii.gz", 2, checkpoint=checkpoint, device="cpu",
                              precision="fp32", slice_thickness=2.5, adapt_seconds=0)
    result = run_pipeline(options, on_ready=ready.append)
    geometry = ready[0].geometry  # the affine is float32: 0.8 mm reads back as 0.800000012
    assert (geometry.spacing_mm, geometry.thickness_mm, geometry.thickness_source) == (4.0, 2.5, "given")
    assert geometry.in_plane_mm == pytest.approx((0.8, 0.8))
    description = description_of(tmp_path / "thin.nii.gz")
    assert description == "CTSS x2 lite_x2; T=2.50mm(given) dz=4.00mm"
    assert result.adapted_steps == 0 and "+adapt" not in description
    output = np.asanyarray(nib.load(str(tmp_path / "thin.nii.gz")).dataobj)
    assert output.shape == (24, 24, 11)
    np.testing.assert_array_equal(output[..., ::2], np.asanyarray(nib.load(str(source)).dataobj))


def test_without_a_thickness_a_small_volume_reports_its_spacing(tmp_path: Path, inputs) -> None:
    source, checkpoint = inputs
    options = PipelineOptions(source, tmp_path / "thin.nii", 2, checkpoint=checkpoint, device="cpu", adapt_seconds=0,
                              precision="fp32", thickness_source="dicom")  # no thickness: the source is unused
    result = run_pipeline(options)
    assert result.info.geometry.thickness_source == "spacing"
    assert description_of(tmp_path / "thin.nii").endswith("; T=4.00mm(spacing) dz=4.00mm")


def test_numpy_input_without_spacing_warns_and_does_not_adapt(tmp_path: Path, inputs) -> None:
    _, checkpoint = inputs
    kji = ct_volume((5, 16, 24), seed=2)
    np.save(tmp_path / "input.npy", kji)
    lines: List[str] = []
    stages: List[str] = []
    options = PipelineOptions(tmp_path / "input.npy", tmp_path / "output.npy", 2, axis=0, checkpoint=checkpoint,
                              device="cpu", precision="fp32", adapt_seconds=5.0)
    result = run_pipeline(options, log=lines.append, progress=lambda fraction, stage: stages.append(stage))
    assert result.info.spacing is None and result.info.geometry is None
    assert result.adapted_steps == 0 and "adapting to this scan" not in stages
    assert [line for line in lines if "spacing is unknown" in line and "not adapting" in line]
    assert all(line.startswith("warning: ") for line in lines)
    np.testing.assert_array_equal(np.load(tmp_path / "output.npy")[::2], kji)


def test_numpy_input_with_spacing_has_a_geometry(tmp_path: Path, inputs) -> None:
    _, checkpoint = inputs
    np.save(tmp_path / "input.npy", ct_volume((5, 16, 24), seed=2))
    options = PipelineOptions(tmp_path / "input.npy", tmp_path / "output.npy", 2, axis=0, checkpoint=checkpoint,
                              device="cpu", precision="fp32", spacing=(3.0, 0.7, 0.9), slice_thickness=1.5,
                              adapt_seconds=0)
    lines: List[str] = []
    result = run_pipeline(options, log=lines.append)
    assert result.info.geometry == SliceGeometry(3.0, 1.5, "given", (0.7, 0.9))
    assert not [line for line in lines if "spacing is unknown" in line]
