"""Which Python packages the engine needs in Slicer, and installing them when the user agrees.

torch comes from the PyTorch extension's ``PyTorchUtils`` (it picks the right CUDA or CPU build); the other
packages, listed in ``Resources/requirements.txt`` with lower bounds only, come from ``slicer.util.pip_install``.
Slicer's own numpy and SimpleITK are never touched: pip is given them pinned to their installed versions, so it
fails rather than replace them. Checks read package metadata and import nothing, so a package found too old can
still be upgraded without a restart. Nothing here runs at import time; ``slicer`` and
``PyTorchUtils`` are imported only by :func:`ensure_dependencies`, which must run on the main thread.
"""

from __future__ import annotations

import importlib.metadata
import inspect
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

TORCH_REQUIREMENT = ">=2.2"
# Packages Slicer bundles and other parts of Slicer rely on: pip may not replace them.
SLICER_PACKAGES = ("numpy", "SimpleITK")

VersionLookup = Callable[[str], Optional[str]]


class DependencyError(RuntimeError):
    """A required package is missing or unusable; the message (one line) says what to do."""


def installed_version(distribution: str) -> Optional[str]:
    """Version of an installed distribution, from its metadata (nothing is imported); ``None`` if absent."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def read_requirements(path: Path) -> List[str]:
    """The requirement lines of a requirements file, without comments and blank lines."""
    lines = (line.split("#", 1)[0].strip() for line in Path(path).read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line]


def is_satisfied(requirement: str, version_of: VersionLookup = installed_version) -> bool:
    """Whether ``requirement`` (e.g. ``nibabel>=5``) is met by what is installed."""
    try:
        parsed = Requirement(requirement)
    except InvalidRequirement:
        raise DependencyError(f"invalid requirement {requirement!r}") from None
    version = version_of(parsed.name)
    if version is None:
        return False
    try:
        return parsed.specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def unmet_requirements(requirements: Sequence[str], version_of: VersionLookup = installed_version) -> List[str]:
    """The requirements of ``requirements`` that are not met."""
    return [requirement for requirement in requirements if not is_satisfied(requirement, version_of)]


def install_prompt(torch_needed: bool, packages: Sequence[str]) -> str:
    """The question asked before installing: what will be installed, and that it may take minutes."""
    items = []
    if torch_needed:
        items.append(f"PyTorch (torch{TORCH_REQUIREMENT}, through the PyTorch extension; about 1 to 3 GB)")
    items.extend(packages)
    return (
        "CTSliceSynthesis needs these Python packages, which are not installed yet:\n  - "
        + "\n  - ".join(items)
        + "\n\nInstall them now? It may take several minutes; Slicer stays unresponsive while it runs."
    )


def pip_arguments(packages: Sequence[str], version_of: VersionLookup = installed_version) -> List[str]:
    """What ``pip install`` gets: ``packages`` plus Slicer's own packages pinned to their installed versions.

    A pin (``numpy==2.0.2``) is a no-op for an installed package, but makes pip fail instead of upgrading or
    downgrading it to satisfy one of ``packages``. Versions that are not PEP 440 (a local build) are left unpinned.
    """
    pins = []
    for name in SLICER_PACKAGES:
        version = version_of(name)
        if version is None:
            continue
        try:
            pins.append(f"{name}=={Version(version)}")
        except InvalidVersion:
            continue
    return list(packages) + pins


def import_failure_message(error: BaseException) -> str:
    """One line for the background process when an engine package is installed but cannot be imported.

    A missing package other than torch points to the installation the module offers; anything else (torch
    missing, or a broken or mismatched wheel failing to load) points to reinstalling PyTorch.
    """
    detail = " ".join(f"{type(error).__name__}: {error}".split())
    missing = (getattr(error, "name", None) or "").split(".")[0]
    if missing and missing != "torch":
        hint = ("install the missing packages: click Synthesize slices in the module and accept, or run the batch "
                "with --install-dependencies")
    else:
        hint = ("PyTorch is missing or unusable: in the PyTorch Utils module uninstall PyTorch, restart Slicer, "
                "install it again, and retry")
    return f"the engine's Python packages cannot be loaded ({detail}); {hint}"


def missing_dependencies(requirements_path: Path, version_of: VersionLookup = installed_version) -> tuple:
    """``(torch_needed, unmet_packages)`` for the engine's dependencies."""
    torch_needed = not is_satisfied("torch" + TORCH_REQUIREMENT, version_of)
    return torch_needed, unmet_requirements(read_requirements(requirements_path), version_of)


def pip_install_options(pip_install: Callable, show_progress: bool) -> Dict[str, Any]:
    """Keyword arguments for Slicer's ``pip_install``: ``show_progress=False`` for a run without a GUI, where this
    Slicer's ``pip_install`` accepts it (5.11 and later show a progress dialog by default; earlier ones show none)."""
    if show_progress:
        return {}
    try:
        parameters = inspect.signature(pip_install).parameters.values()
    except (TypeError, ValueError):
        return {}
    accepted = any(p.name == "show_progress" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)
    return {"show_progress": False} if accepted else {}


def ensure_dependencies(
    requirements_path: Path,
    confirm: Optional[Callable[[str], bool]],
    version_of: VersionLookup = installed_version,
    show_progress: bool = True,
) -> None:
    """Make sure torch and the other packages are installed, installing them if ``confirm(question)`` agrees.

    ``confirm=None`` installs nothing (batch runs without ``--install-dependencies``); ``show_progress=False``
    keeps pip's progress dialog away (batch runs). Raises :class:`DependencyError` (one line) when something is
    missing or cannot be installed. Call from Slicer's main thread only.
    """
    torch_needed, packages = missing_dependencies(requirements_path, version_of)
    if not torch_needed and not packages:
        return
    names = (["torch" + TORCH_REQUIREMENT] if torch_needed else []) + list(packages)
    if confirm is None:
        raise DependencyError(f"missing Python packages: {', '.join(names)} (install them from the module, "
                              "or run the batch with --install-dependencies)")
    if not confirm(install_prompt(torch_needed, packages)):
        raise DependencyError(f"installation declined; missing Python packages: {', '.join(names)}")
    if torch_needed:
        _install_torch()
    if packages:
        import slicer

        try:
            slicer.util.pip_install(pip_arguments(packages, version_of),
                                    **pip_install_options(slicer.util.pip_install, show_progress))
        except Exception as error:  # pip's failure (e.g. it would have to replace Slicer's numpy), in one line
            detail = " ".join(f"{type(error).__name__}: {error}".split())
            raise DependencyError(f"pip could not install {', '.join(packages)} ({detail}); its output is in "
                                  "Slicer's Python console and log") from None
    torch_needed, packages = missing_dependencies(requirements_path, version_of)
    if torch_needed or packages:
        still = (["torch" + TORCH_REQUIREMENT] if torch_needed else []) + list(packages)
        raise DependencyError(f"still missing after installation: {', '.join(still)}; restart Slicer and try again")


def _install_torch() -> None:
    """Install torch with the PyTorch extension's logic (the right build for this computer's GPU, or CPU)."""
    try:
        import PyTorchUtils
    except ModuleNotFoundError:
        raise DependencyError(
            "the 'PyTorch' extension is not installed: install it with the Extensions Manager, restart Slicer, "
            "and try again"
        ) from None
    try:
        torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(
            askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT
        )
    except Exception as error:  # a failed or corrupted wheel installation: give the recovery steps
        raise DependencyError(
            f"PyTorch could not be installed ({type(error).__name__}: {' '.join(str(error).split())}); restart Slicer, "
            "uninstall PyTorch in the PyTorch Utils module, and install it again"
        ) from None
    if torch is None:
        raise DependencyError("PyTorch was not installed")
