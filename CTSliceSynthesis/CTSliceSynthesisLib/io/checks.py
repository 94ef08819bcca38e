"""Checks before a synthesis starts: the volume (shape, type, finite values), what the networks cannot tell
(segmentations, non-HU intensities), the memory it needs, and where the output goes.

Pure numpy and the standard library; used by the synthesis, the command line and the Slicer module's background
process.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from ..core.config import check_scale
from ..core.errors import InputError, OutputError
from ..core.geometry import upsampled_length

# An integer volume with no negative value, a maximum of at most LABEL_MAX_VALUE and between 2 and
# LABEL_MAX_DISTINCT distinct values is a label map (segmentation), not a CT image: CT in HU has air at −1000 and
# thousands of distinct values.
LABEL_MAX_VALUE = 1023
LABEL_MAX_DISTINCT = 128
# A CT in HU has air (−1000) or at least fat (−100) somewhere; a minimum above this is another modality or scale.
CT_MIN_BELOW_HU = -200.0
# What a synthesis needs besides its arrays: the torch runtime, the model and the network chunks (measured
# peak RSS minus the arrays: 0.27–0.33 GB on 512×512 slices, README "Measured").
RUNTIME_OVERHEAD_BYTES = 400 * 10**6
MEMINFO = Path("/proc/meminfo")
CGROUP_MEMORY = Path("/sys/fs/cgroup")


def check_volume(volume: np.ndarray, scale: int, axis: int) -> None:
    """Raise :class:`InputError` (one line) if ``volume`` cannot be synthesized along ``axis`` by ``scale``."""
    check_scale(scale)
    if volume.ndim != 3:
        raise InputError(f"expected a 3-D volume, got {volume.ndim}-D data of shape {volume.shape}")
    if volume.dtype.kind not in "iuf":
        raise InputError(f"expected a scalar intensity volume, got voxel type {volume.dtype}")
    if not -3 <= axis <= 2:
        raise InputError(f"axis must be 0, 1 or 2, got {axis}")
    if volume.shape[axis] < 2:
        raise InputError(f"need at least 2 slices along the thick axis, got {volume.shape[axis]}")
    if min(volume.shape) < 1:
        raise InputError(f"empty volume of shape {volume.shape}")
    if volume.dtype.kind == "f":
        bad = int(np.size(volume) - np.count_nonzero(np.isfinite(volume)))
        if bad:
            raise InputError(f"the volume has {bad} NaN or infinite voxels")


def check_output_path(output: Path, inputs: Sequence[Path], overwrite: bool, suffixes: Sequence[str]) -> None:
    """Refuse, before any computation, an output that does not end in one of ``suffixes``, would overwrite an
    input, or an existing file (without ``overwrite``), or cannot be written."""
    if not str(output).lower().endswith(tuple(suffixes)):
        raise OutputError(f"output {output} must end in {' or '.join(suffixes)}")
    for source in inputs:
        same_file = source.exists() and output.exists() and os.path.samefile(source, output)
        if same_file or output.resolve() == source.resolve():
            raise OutputError(f"output {output} is the input file: choose another name")
    if output.exists() and not overwrite:
        raise OutputError(f"output {output} exists: pass --overwrite to replace it")
    folder = output.parent if str(output.parent) else Path(".")
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise OutputError(f"output folder {folder} {problem}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable")


def refuse_label_map(volume: np.ndarray, name: str = "the volume") -> None:
    """Raise :class:`InputError` if ``volume`` looks like a segmentation (few small non-negative integers)."""
    if volume.dtype.kind not in "iu" or volume.size == 0:
        return
    low, high = int(volume.min()), int(volume.max())
    if low < 0 or high > LABEL_MAX_VALUE:
        return
    counts = np.zeros(high + 1, dtype=np.int64)
    for slab in volume if volume.ndim > 1 else volume[None]:  # one slab at a time: small int64 copies
        counts += np.bincount(slab.ravel().astype(np.intp), minlength=high + 1)
    distinct = int(np.count_nonzero(counts))
    if 2 <= distinct <= LABEL_MAX_DISTINCT:
        raise InputError(
            f"{name} looks like a segmentation (label map: {distinct} distinct values from {low} to {high}), "
            "not a CT image in HU; synthesize the CT it was drawn on"
        )


def intensity_warning(volume: np.ndarray) -> Optional[str]:
    """A one-line warning when the intensities do not look like CT in Hounsfield units, else ``None``.

    The synthesis still runs: the networks clip their input to [−1024, 3072] HU and the synthesized voxels are
    returned in that range (acquired slices are copied unchanged).
    """
    if volume.size == 0:
        return None
    low, high = float(np.min(volume)), float(np.max(volume))
    if low <= CT_MIN_BELOW_HU:
        return None
    return (
        f"intensities {low:.4g} to {high:.4g} do not look like CT in HU (no air or fat below {CT_MIN_BELOW_HU:g}); "
        "synthesized voxels are clipped to [-1024, 3072] HU"
    )


def synthesis_memory_bytes(
    shape: Sequence[int],
    axis: int,
    scale: int,
    itemsize: int,
    load_itemsize: Optional[int] = None,
    with_disagreement: bool = False,
) -> int:
    """Peak memory of one synthesis, from the header alone: input, output, float32 accumulator, runtime.

    ``itemsize`` is the bytes per voxel of the volume and of the output; ``load_itemsize`` those while reading
    (8 when nibabel applies a slope or intercept). The disagreement map adds two float32 view differences and
    the float32 map itself.
    """
    slices = int(shape[axis])
    plane = int(np.prod([int(n) for n in shape], dtype=np.int64)) // max(slices, 1)
    synthesized = max(slices - 1, 0) * (scale - 1) * plane
    output = upsampled_length(slices, scale) * plane
    total = slices * plane * max(itemsize, load_itemsize or itemsize) + output * itemsize + synthesized * 4
    if with_disagreement:
        total += 2 * synthesized * 4 + output * 4
    return int(total + RUNTIME_OVERHEAD_BYTES)


def available_memory_bytes(meminfo: Path = MEMINFO, cgroup: Path = CGROUP_MEMORY) -> Optional[int]:
    """Memory this process can still use: ``MemAvailable`` of ``/proc/meminfo`` (else ``os.sysconf``), capped by
    a cgroup v2 limit; ``None`` when the platform tells neither."""
    system = _meminfo_available(meminfo)
    if system is None:
        system = _sysconf_available()
    limit = _cgroup_headroom(cgroup)
    known = [value for value in (system, limit) if value is not None]
    return min(known) if known else None


def check_memory(needed: int, what: str, available: Optional[Callable[[], Optional[int]]] = None) -> None:
    """Raise :class:`InputError` when ``needed`` bytes exceed what ``available()`` reports (default:
    :func:`available_memory_bytes`, looked up at call time so that tests can replace it; unknown: no check)."""
    free = (available or available_memory_bytes)()
    if free is not None and needed > free:
        raise InputError(
            f"{what} needs about {needed / 1e9:.1f} GB of memory but only {free / 1e9:.1f} GB is available: "
            "close other programs, crop the volume or use a machine with more memory"
        )


def _meminfo_available(meminfo: Path) -> Optional[int]:
    """``MemAvailable`` in bytes, if ``meminfo`` exists and has it."""
    try:
        lines = meminfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("MemAvailable:"):
            fields = line.split()
            return int(fields[1]) * 1024 if len(fields) >= 2 and fields[1].isdigit() else None
    return None


def _sysconf_available() -> Optional[int]:
    """Free physical pages × page size (POSIX systems that have ``SC_AVPHYS_PAGES``)."""
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _cgroup_headroom(cgroup: Path) -> Optional[int]:
    """``memory.max`` minus the working set (``memory.current`` less reclaimable ``inactive_file``) of a cgroup v2
    folder, or ``None`` without a limit."""
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        used = (cgroup / "memory.current").read_text().strip()
        stat = (cgroup / "memory.stat").read_text().split()
    except OSError:
        return None
    if not (limit.isdigit() and used.isdigit()):
        return None
    pairs = dict(zip(stat[::2], stat[1::2]))
    reclaimable = int(pairs.get("inactive_file", "0")) if pairs.get("inactive_file", "0").isdigit() else 0
    return max(int(limit) - int(used) + reclaimable, 0)
