"""``Scripts/batch.py``, unchanged, end to end through Slicer's own readers and writers (``slicer_core_harness``).

One batch runs over a folder with a left-handed ``.nrrd``, an oblique ``.nii.gz``, an oblique ``.mha`` and a
corrupt file, with a small untrained model and no adaptation; the tests read what it wrote with Slicer's readers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
import pytest

from slicer_core_harness import ENGINE_ROOT

pytestmark = pytest.mark.slicer_core

HARNESS = Path(__file__).resolve().parent / "slicer_core_harness.py"
BATCH_SCRIPT = ENGINE_ROOT / "Scripts" / "batch.py"
SCALE = 2
# name -> (3×3 direction-times-spacing columns: I, J, K), all with 5 mm slices along K.
INPUTS = {
    "left.nrrd": np.diag([-0.8, 0.8, 5.0]),
    "oblique_nifti.nii.gz": np.array([[0.0, 0.7, 0.0], [0.7, 0.0, 0.0], [0.0, 0.0, -5.0]]),
    "oblique_meta.mha": np.array([[0.75, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, -0.75, 0.0]]),
}
BAD_FILE = "corrupt.nrrd"


@dataclass
class BatchRun:
    """What the batch read and wrote."""

    input_dir: Path
    output_dir: Path
    checkpoint: Path
    voxels: Dict[str, np.ndarray]  # as written, in K, J, I order
    matrices: Dict[str, np.ndarray]  # IJK-to-RAS as written
    completed: subprocess.CompletedProcess


def phantom(shape: Tuple[int, int, int], seed: int) -> np.ndarray:
    """A small int16 volume in HU: a soft-tissue body with a few bright and dark spots, air around it."""
    rng = np.random.default_rng(seed)
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n) for n in shape), indexing="ij")
    body = np.where(j**2 + i**2 < 0.7, 40.0, -1000.0)
    spots = sum(300.0 * np.exp(-((j - a) ** 2 + (i - b) ** 2 + (k - c) ** 2) / 0.05)
                for a, b, c in rng.uniform(-0.5, 0.5, (4, 3)))
    return np.round(body + spots + rng.normal(0, 5, shape)).astype(np.int16)


def read(slicer, path: Path) -> Tuple[np.ndarray, np.ndarray]:
    """``(voxels, IJK-to-RAS)`` of a file as Slicer's reader loads it."""
    import vtk

    node = slicer.util.loadVolume(str(path), {"show": False})
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    voxels = slicer.util.arrayFromVolume(node).copy()
    slicer.mrmlScene.RemoveNode(node)
    return voxels, slicer.util.arrayFromVTKMatrix(matrix)


def ras_of(matrix: np.ndarray, ijk) -> np.ndarray:
    """The RAS position of voxel ``ijk`` (I, J, K)."""
    return (matrix @ [*ijk, 1.0])[:3]


def engine_environment() -> Dict[str, str]:
    """The environment of a child process: this worktree's engine first, one thread per process."""
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    environment["PYTHONPATH"] = os.pathsep.join([str(ENGINE_ROOT), environment.get("PYTHONPATH", "")])
    return environment


@pytest.fixture(scope="module")
def batch_run(slicer_core, tmp_path_factory) -> BatchRun:
    """Write the inputs with Slicer's writers, then run ``batch.py`` over their folder as ``Slicer --python-script``."""
    from CTSliceSynthesisLib.inference.model_store import create_model, save_model

    slicer = slicer_core
    root = tmp_path_factory.mktemp("batch")
    input_dir, output_dir = root / "in", root / "out"
    input_dir.mkdir()
    checkpoint = root / "lite_x2.pt"
    save_model(create_model("lite", SCALE), checkpoint)
    voxels, matrices = {}, {}
    for seed, (name, columns) in enumerate(INPUTS.items()):
        matrix = np.eye(4)
        matrix[:3, :3] = columns
        matrix[:3, 3] = [10.0 * seed - 5.0, -20.0, 30.0]
        voxels[name] = phantom((4, 24, 20), seed)
        node = slicer.util.addVolumeFromArray(voxels[name], matrix, name.split(".")[0])
        assert slicer.util.saveNode(node, str(input_dir / name))
        slicer.mrmlScene.RemoveNode(node)
        matrices[name] = matrix
    (input_dir / BAD_FILE).write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 9 9\nencoding: raw\n\n\x00")
    command = [sys.executable, str(HARNESS), str(BATCH_SCRIPT), "--input", str(input_dir), "--output", str(output_dir),
               "--scale", str(SCALE), "--checkpoint", str(checkpoint), "--device", "cpu", "--adapt-seconds", "0"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, env=engine_environment())
    return BatchRun(input_dir, output_dir, checkpoint, voxels, matrices, completed)


def output_of(run: BatchRun, name: str) -> Path:
    """The file the batch wrote for input ``name`` (NRRD, the folder default)."""
    from CTSliceSynthesisLib.slicer_support.naming import output_file_name

    return run.output_dir / output_file_name(run.input_dir / name, SCALE, ".nrrd")


def test_batch_over_a_folder_with_a_bad_file(batch_run):
    """The corrupt file is reported FAILED, the three good ones still run, and the exit code is 1."""
    lines = batch_run.completed.stdout.splitlines()
    assert batch_run.completed.returncode == 1, batch_run.completed.stdout + batch_run.completed.stderr
    failed = [line for line in lines if " FAILED " in line]
    assert len(failed) == 1 and BAD_FILE in failed[0]
    assert sum(" done " in line for line in lines) == len(INPUTS)
    assert lines[-1] == f"error: 1 of {len(INPUTS) + 1} volumes failed"
    written = sorted(path.name for path in batch_run.output_dir.iterdir())
    assert written == sorted(output_of(batch_run, name).name for name in INPUTS)


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_batch_keeps_acquired_slices_bit_exact_in_place(slicer_scene, batch_run, name):
    """Every second output slice is an input slice as Slicer loads it, bit for bit, at the same RAS position."""
    loaded, loaded_matrix = read(slicer_scene, batch_run.input_dir / name)
    result, result_matrix = read(slicer_scene, output_of(batch_run, name))
    assert result.dtype == np.int16
    assert result.shape == ((loaded.shape[0] - 1) * SCALE + 1,) + loaded.shape[1:]
    np.testing.assert_array_equal(result[::SCALE], loaded)
    for k in range(loaded.shape[0]):
        for ijk in ((0, 0, k), (19, 23, k)):
            np.testing.assert_allclose(ras_of(result_matrix, (ijk[0], ijk[1], SCALE * k)), ras_of(loaded_matrix, ijk),
                                       atol=1e-3)


def test_batch_left_handed_input_comes_back_right_handed(slicer_scene, batch_run):
    """A left-handed input comes back right-handed with its slices in reverse order: the same anatomy in the same
    place (Slicer's reader reverses K; the batch keeps what it loaded)."""
    written, written_matrix = batch_run.voxels["left.nrrd"], batch_run.matrices["left.nrrd"]
    assert np.linalg.det(written_matrix[:3, :3]) < 0
    result, result_matrix = read(slicer_scene, output_of(batch_run, "left.nrrd"))
    assert np.linalg.det(result_matrix[:3, :3]) > 0
    np.testing.assert_array_equal(result[::SCALE], written[::-1])
    last = written.shape[0] - 1
    for k in range(written.shape[0]):
        np.testing.assert_allclose(ras_of(result_matrix, (3, 5, SCALE * (last - k))), ras_of(written_matrix, (3, 5, k)),
                                   atol=1e-3)


def in_physical_space(voxels: np.ndarray, matrix: np.ndarray, reference_matrix: np.ndarray, shape) -> np.ndarray:
    """``voxels`` (K, J, I) on the grid of ``matrix`` rearranged onto the grid of ``reference_matrix`` (same voxel
    centres up to axis order and direction; anything else fails)."""
    mapping = np.linalg.inv(matrix) @ reference_matrix  # reference IJK -> this IJK
    np.testing.assert_allclose(mapping, np.round(mapping), atol=1e-4)
    mapping = np.round(mapping).astype(int)
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    target = mapping @ np.stack([i.ravel(), j.ravel(), k.ravel(), np.ones(i.size, int)])
    return voxels[target[2], target[1], target[0]].reshape(shape)


def test_batch_matches_the_command_line(slicer_scene, batch_run, tmp_path):
    """``ct-slice-synthesis synthesize`` with the same options writes the same voxels at the same places."""
    source = batch_run.input_dir / "oblique_nifti.nii.gz"
    cli_output = tmp_path / "cli.nii.gz"
    command = [sys.executable, "-m", "CTSliceSynthesisLib.cli", "synthesize", "--input", str(source),
               "--output", str(cli_output), "--scale", str(SCALE), "--model", str(batch_run.checkpoint),
               "--device", "cpu", "--adapt-seconds", "0", "--quiet"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600, env=engine_environment())
    assert completed.returncode == 0, completed.stdout + completed.stderr
    batch, batch_matrix = read(slicer_scene, output_of(batch_run, "oblique_nifti.nii.gz"))
    cli, cli_matrix = read(slicer_scene, cli_output)
    assert cli.shape == batch.shape
    np.testing.assert_array_equal(in_physical_space(cli, cli_matrix, batch_matrix, batch.shape), batch)
