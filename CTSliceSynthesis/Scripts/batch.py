"""Headless batch synthesis with 3D Slicer: a volume file, or every volume file in a folder, in and out.

    Slicer --no-splash --no-main-window --python-script CTSliceSynthesis/Scripts/batch.py -- \\
        --input thick.nrrd --output thin.nrrd --scale 2

Reads anything Slicer reads (NRRD, NIfTI, MetaImage...), writes NRRD or NIfTI (by the output's extension, or
``--format`` for a folder). Prints one line per volume; exits 0 on success, non-zero with a one-line ``error:``
otherwise (codes in ``CTSliceSynthesisLib/slicer_support/batch_args.py``). No dialog is ever shown: missing
packages are installed only with ``--install-dependencies``. ``--help`` lists every option.
"""

import sys
import traceback
from pathlib import Path

# The module folder (CTSliceSynthesis.py and CTSliceSynthesisLib) is this script's parent's parent.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from CTSliceSynthesisLib.slicer_support import batch_args  # noqa: E402
from CTSliceSynthesisLib.slicer_support.batch_runner import run_batch  # noqa: E402
from CTSliceSynthesisLib.slicer_support.dependencies import ensure_dependencies  # noqa: E402
from CTSliceSynthesisLib.slicer_support.thickness_field import describe_result  # noqa: E402


def prepare(options: batch_args.BatchOptions) -> None:
    """Check the Python dependencies once; install them only if the command line allows it."""
    from CTSliceSynthesis import CTSliceSynthesisLogic

    confirm = (lambda question: True) if options.install_dependencies else None
    ensure_dependencies(CTSliceSynthesisLogic.requirementsPath(), confirm=confirm, show_progress=False)


def save(node, path: Path) -> None:
    """Write a volume node to ``path`` (format from the extension)."""
    import slicer

    if not slicer.util.saveNode(node, str(path)):
        raise RuntimeError(f"could not write {path}")


def synthesize_file(source: Path, target: Path, options: batch_args.BatchOptions) -> None:
    """Load ``source``, synthesize it (blocking, background process), say what slice geometry it was given or
    found, and write ``target``."""
    import slicer
    from CTSliceSynthesis import CTSliceSynthesisLogic

    slicer.mrmlScene.Clear(0)
    try:
        volume = slicer.util.loadVolume(str(source), {"show": False})
        outputs = CTSliceSynthesisLogic().process(
            volume,
            scale=options.scale,
            thickAxis=options.axis,
            checkpoint=str(options.checkpoint) if options.checkpoint else None,
            device=options.device,
            adaptSteps=options.adapt_steps,
            adaptSeconds=options.adapt_seconds,
            seed=options.seed,
            sliceThickness=options.slice_thickness,
            thicknessSource="given",
            withDisagreement=options.disagreement,
            waitForCompletion=True,
        )
        print(f"{source.name}: {describe_result(outputs.info)}", flush=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        save(outputs.outputVolume, target)
        if options.disagreement:
            save(outputs.disagreementVolume, batch_args.disagreement_path(target))
    finally:
        slicer.mrmlScene.Clear(0)


def main() -> int:
    """Run the batch on this script's arguments; the exit code."""
    return run_batch(sys.argv[1:], synthesize_file, prepare, echo=lambda line: print(line, flush=True))


if __name__ == "__main__":
    try:
        exit_code = main()
    except Exception as error:  # an uncaught exception would leave Slicer running: report it and exit
        traceback.print_exc()
        print(f"error: {type(error).__name__}: {' '.join(str(error).split())}", flush=True)
        exit_code = batch_args.EXIT_FAILED
    sys.exit(exit_code)
