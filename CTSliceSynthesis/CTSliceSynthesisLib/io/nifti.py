"""Reading and writing NIfTI volumes with their geometry (nibabel)."""

from __future__ import annotations

import errno
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import nibabel as nib
import numpy as np

from ..core.errors import InputError, OutputError
from .atomic import PathLike, write_atomically

NIFTI_SUFFIXES = (".nii", ".nii.gz")
VECTOR_INTENTS = ("vector", "rgb vector", "rgba vector", "displacement vector")
LABEL_INTENTS = ("label", "neuroname")
DISK_FULL_REASONS = {
    errno.ENOSPC: "no space left on the disk",
    errno.EFBIG: "the file is larger than this system or process allows (file size limit)",
}
DESCRIPTION_BYTES = 80  # the NIfTI-1 descrip field
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, gzip.BadGzipFile, nib.filebasedimages.ImageFileError)


@dataclass
class NiftiVolume:
    """Voxel array (as stored: no scaling applied when slope = 1 and intercept = 0), affine and header."""

    data: np.ndarray
    affine: np.ndarray
    header: nib.Nifti1Header


def is_nifti_path(path: PathLike) -> bool:
    """True for ``.nii`` and ``.nii.gz`` file names."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def read_nifti(path: PathLike) -> NiftiVolume:
    """Read a 3-D scalar NIfTI volume; one-line :class:`InputError` for anything else."""
    return load_nifti(open_nifti(path), path)


def open_nifti(path: PathLike) -> nib.Nifti1Image:
    """Open a NIfTI file without reading its voxels and refuse, from the header alone, anything that is not one
    3-D scalar image (2-D, a 4-D series, RGB or vector voxels, a label map)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    if not is_nifti_path(path):
        raise InputError(f"{path.name} is not a NIfTI file (.nii or .nii.gz)")
    try:
        image = nib.load(str(path))
    except READ_ERRORS as error:
        raise InputError(f"cannot read {path.name}: the file is truncated or corrupt ({type(error).__name__})") from None
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"{path.name} is not a NIfTI-1/2 image")
    _check_header(image, path.name)
    return image


def load_nifti(image: nib.Nifti1Image, path: PathLike) -> NiftiVolume:
    """The voxels of an image from :func:`open_nifti` (``path`` names it in messages)."""
    name = Path(path).name
    try:
        data = np.asanyarray(image.dataobj)
    except READ_ERRORS as error:
        raise InputError(f"cannot read {name}: the file is truncated or corrupt ({type(error).__name__})") from None
    data = _unscaled_if_integral(data, image.header.get_data_dtype())
    if data.ndim == 4:
        data = data[..., 0]
    return NiftiVolume(data=data, affine=np.asarray(image.affine, dtype=np.float64), header=image.header)


def voxel_itemsizes(image: nib.Nifti1Image) -> Tuple[int, Optional[int]]:
    """Bytes per voxel of an image from :func:`open_nifti`, from its header: ``(in the volume and the output,
    while reading)``; the second is ``None`` when reading needs no more. A slope or intercept on integer voxels
    makes nibabel read float64, and the engine then keeps int16 or float32 (see :func:`load_nifti`)."""
    stored = image.get_data_dtype()
    slope, intercept = image.header.get_slope_inter()
    scaled = stored.kind in "iu" and ((slope is not None and slope != 1) or (intercept is not None and intercept != 0))
    return (4, 8) if scaled else (stored.itemsize, None)


def _check_header(image: nib.Nifti1Image, name: str) -> None:
    """One-line :class:`InputError` for images the synthesis cannot take, decided from the header."""
    shape, stored = tuple(image.shape), image.get_data_dtype()
    intent = image.header.get_intent()[0]
    if stored.names is not None or stored.kind not in "iuf" or intent in VECTOR_INTENTS or len(shape) > 4:
        raise InputError(
            f"{name} holds {stored} voxels of shape {shape} (RGB or vector?); expected a scalar CT volume"
        )
    if intent in LABEL_INTENTS:
        raise InputError(
            f"{name} is marked as a label map (NIfTI intent {intent!r}): it looks like a segmentation, not a CT image"
        )
    if len(shape) == 4 and shape[3] != 1:
        raise InputError(f"{name} is a 4-D series of {shape[3]} volumes {shape}; expected a single 3-D volume")
    if len(shape) < 3:
        raise InputError(f"{name} is {len(shape)}-D with shape {shape}; expected a single 3-D volume")


def _unscaled_if_integral(data: np.ndarray, stored: np.dtype) -> np.ndarray:
    """Integer files with a slope/intercept come back as float64; keep them as int16 when the scaled values are
    whole numbers that fit (the usual DICOM-converted CT), else as float32."""
    if data.dtype != np.float64 or stored.kind not in "iu":
        return data
    info = np.iinfo(np.int16)
    if data.size and data.min() >= info.min and data.max() <= info.max and np.array_equal(data, np.rint(data)):
        return data.astype(np.int16)
    return data.astype(np.float32)


def write_nifti(
    path: PathLike,
    data: np.ndarray,
    affine: np.ndarray,
    template: nib.Nifti1Header,
    description: Optional[str] = None,
) -> None:
    """Write ``data`` with ``affine`` atomically, keeping the template header's codes, units and intent.

    The data type of the file is the array's; the qform and sform both carry ``affine``. ``description`` (at
    most 80 ASCII characters, cut otherwise) replaces the header's ``descrip`` field: the output's provenance.
    """
    header = template.copy()
    header.set_data_dtype(data.dtype)
    if description is not None:
        header["descrip"] = description.encode("ascii", "replace")[:DESCRIPTION_BYTES]
    image = nib.Nifti1Image(data, affine, header=header)
    qform_code = int(template["qform_code"]) or 1
    sform_code = int(template["sform_code"]) or 1
    image.set_qform(affine, code=qform_code)
    image.set_sform(affine, code=sform_code)
    image.header.set_slope_inter(1.0, 0.0)
    try:
        write_atomically(path, lambda temporary: nib.save(image, str(temporary)))
    except OSError as error:
        reason = DISK_FULL_REASONS.get(error.errno, error.strerror or str(error))
        raise OutputError(f"cannot write {path}: {reason}; nothing was written") from None
