"""The demo's real CT: InVesalius' "Cranium" head CT (GPL-2), fetched from Debian's package registry once."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from ..core.errors import InputError

PACKAGE = "invesalius-examples"
MEMBER = "usr/share/doc/invesalius-examples/examples/Cranium.inv3"
CACHE_ENV = "CTSLICESYNTHESIS_CACHE"


def cache_dir() -> Path:
    """``$CTSLICESYNTHESIS_CACHE`` or ``~/.cache/ct-slice-synthesis``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "ct-slice-synthesis"))


def cranium_path() -> Path:
    """Path of the cached NIfTI conversion of Cranium.inv3, fetching and converting it on first use."""
    target = cache_dir() / "cranium_1p5mm.nii.gz"
    if target.is_file():
        return target
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise InputError("no Debian package tools here to fetch the sample head CT: pass --input THIN.nii.gz")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        fetched = subprocess.run(
            ["apt-get", "download", PACKAGE], cwd=work, capture_output=True, text=True, timeout=600
        )
        packages = list(work.glob(f"{PACKAGE}_*.deb"))
        if fetched.returncode != 0 or not packages:
            raise InputError(
                f"could not download Debian package {PACKAGE} (no registry reachable?): pass --input THIN.nii.gz"
            )
        subprocess.run(["dpkg-deb", "-x", str(packages[0]), str(work / "root")], check=True, timeout=600)
        convert_inv3(work / "root" / MEMBER, target)
    return target


def convert_inv3(inv3: Path, target: Path) -> None:
    """Convert an InVesalius project (tar.gz with ``main.plist`` and a raw ``matrix.dat``) to NIfTI."""
    with tempfile.TemporaryDirectory() as scratch, tarfile.open(inv3, "r:gz") as archive:
        for member in archive.getmembers():
            if member.isfile() and Path(member.name).name in ("main.plist", "matrix.dat"):
                member.name = Path(member.name).name  # flatten; never write outside scratch
                archive.extract(member, scratch)
        meta = plistlib.loads((Path(scratch) / "main.plist").read_bytes())
        shape = tuple(meta["matrix"]["shape"])  # (z, y, x)
        raw = np.fromfile(Path(scratch) / "matrix.dat", dtype=np.dtype(meta["matrix"]["dtype"]))
    volume = raw[: int(np.prod(shape))].reshape(shape)
    data = np.ascontiguousarray(np.transpose(volume, (2, 1, 0)))  # → (x, y, z), slice axis last
    spacing = [float(s) for s in meta["spacing"]]
    image = nib.Nifti1Image(data, np.diag(spacing + [1.0]))
    from .atomic import write_atomically

    write_atomically(target, lambda temporary: nib.save(image, str(temporary)))
