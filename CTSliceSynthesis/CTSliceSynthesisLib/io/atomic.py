"""Write files so that readers see either the old file or the complete new one, never a partial file."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``target`` (same suffixes); on success it replaces ``target`` atomically.

    On any error, or on ``KeyboardInterrupt``, the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    suffix = "".join(target.suffixes) or ".tmp"
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.partial-", suffix=suffix, dir=target.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary_path, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private
    try:
        yield temporary_path
        with open(temporary_path, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temporary_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary_path.unlink()
        raise


def write_atomically(target: PathLike, writer: Callable[[Path], None]) -> None:
    """Call ``writer(temporary_path)`` and move the result onto ``target`` atomically."""
    with atomic_path(target) as temporary:
        writer(temporary)
