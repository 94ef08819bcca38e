"""The README figure of the module's comparison views: orientation as Slicer draws it, linear rows, the PNG."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "Resources" / "Screenshots" / "render_slicer_comparison.py"


@pytest.fixture(scope="module")
def figure():
    """The rendering script, imported as a module."""
    pytest.importorskip("nibabel")
    spec = importlib.util.spec_from_file_location("render_slicer_comparison", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def marked_volume(affine: np.ndarray) -> np.ndarray:
    """A (6, 5, 4) volume with one bright voxel at the patient's most right, most superior corner of the central
    coronal plane, wherever ``affine`` puts the voxel axes."""
    volume = np.zeros((6, 5, 4), np.int16)
    corners = np.array([[i, j, k, 1] for i in (0, 5) for j in (0, 4) for k in (0, 3)], dtype=float)
    ras = corners @ affine.T
    i, _, k = corners[np.argmax(ras[:, 0] + ras[:, 2]), :3].astype(int)
    volume[i, 2, k] = 1000
    return volume


@pytest.mark.parametrize(
    "directions", [np.diag([1.0, 1.0, 1.0]), np.diag([-1.0, -1.0, 1.0]), np.diag([1.0, 1.0, -1.0])],
    ids=["RAS", "LPS", "inferior-first"],
)
def test_coronal_view_has_patient_right_on_the_left_and_superior_at_the_top(figure, directions: np.ndarray) -> None:
    affine = np.eye(4)
    affine[:3, :3] = directions @ np.diag([0.8, 0.9, 5.0])
    view, row_mm, column_mm = figure.radiological_coronal(marked_volume(affine), affine)
    assert view.shape == (4, 6) and (row_mm, column_mm) == pytest.approx((5.0, 0.8))
    assert view[0, 0] == 1000 and view.sum() == 1000


def test_linear_rows_put_the_input_rows_on_every_rth_row(figure) -> None:
    image = np.array([[0.0, 10.0], [40.0, 50.0], [80.0, 90.0]])
    rows = figure.linear_rows(image, 4)
    assert rows.shape == (9, 2)
    np.testing.assert_allclose(rows[::4], image)
    np.testing.assert_allclose(rows[:5, 0], [0.0, 10.0, 20.0, 30.0, 40.0])


def test_crop_takes_fractions_of_height_and_width(figure) -> None:
    image = np.arange(100).reshape(10, 10)
    np.testing.assert_array_equal(figure.crop(image, (0.2, 0.5, 0.0, 0.3)), image[2:5, 0:3])


def test_figure_is_written_and_refuses_a_result_of_another_grid(figure, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    thick = rng.integers(-1000, 400, size=(20, 16, 6)).astype(np.int16)
    affine = np.diag([0.8, 0.8, 5.0, 1.0])
    result = np.repeat(thick, 2, axis=2)[:, :, :11]
    result_affine = np.diag([0.8, 0.8, 2.5, 1.0])
    output = tmp_path / "comparison.png"
    figure.render(thick, affine, result, result_affine, 2, output)
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="×3 grid"):
        figure.render(thick, affine, result, result_affine, 3, tmp_path / "wrong.png")
