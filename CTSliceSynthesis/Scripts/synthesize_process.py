"""Synthesize thin slices for one volume in a background process, reporting progress on stdout.

The CTSliceSynthesis Slicer module runs this with ``PythonSlicer`` so that the GUI never waits on the network:
it writes the input voxels to a ``.npy`` file, starts this script, reads the ``@CTSS`` lines it prints (see
``CTSliceSynthesisLib/slicer_support/process_protocol.py``) and loads the output when it has exited. NIfTI files
(``.nii``, ``.nii.gz``) work too, with the thick axis taken from the affine unless ``--axis`` is given.

Outputs are written atomically (a reader sees no file or a complete one). SIGTERM or SIGINT cancels: the run
stops at the engine's next check, writes nothing and exits with code 3.

    PythonSlicer synthesize_process.py --input in.npy --axis 0 --output out.npy --scale 2 [--device cpu]
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict

# CTSliceSynthesisLib sits next to this script's folder, in the source tree and once installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from CTSliceSynthesisLib.core.errors import CTSliceSynthesisError, SynthesisCancelled  # noqa: E402
from CTSliceSynthesisLib.slicer_support import process_protocol as protocol  # noqa: E402
from CTSliceSynthesisLib.slicer_support.dependencies import import_failure_message  # noqa: E402


def report(fraction: float, stage: str) -> None:
    """Print a progress line and flush it, so the parent sees it at once."""
    print(protocol.format_progress(fraction, stage), flush=True)


def synthesize(request: protocol.SynthesisRequest, cancelled: Callable[[], bool]) -> Dict[str, Any]:
    """Run one synthesis described by ``request``; returns what the RESULT line reports."""
    started = time.monotonic()
    report(0.0, "loading the engine")
    # torch is imported here, after the signal handlers are in place, so that a cancel during the import counts.
    # A package that is missing or fails to load (a broken or mismatched wheel) ends the run with one clear line.
    try:
        import numpy as np

        from CTSliceSynthesisLib.core.callbacks import sub_range
        from CTSliceSynthesisLib.core.geometry import thick_axis, upsampled_affine, voxel_spacing
        from CTSliceSynthesisLib.inference.model_store import load_model, prepare_model
        from CTSliceSynthesisLib.inference.synthesis import synthesize_volume
        from CTSliceSynthesisLib.io.atomic import write_atomically
        from CTSliceSynthesisLib.io.checks import check_volume, intensity_warning, refuse_label_map
        from CTSliceSynthesisLib.io.nifti import is_nifti_path, read_nifti, write_nifti
        from CTSliceSynthesisLib.training.adaptation import adapt_to_volume
    except (ImportError, OSError) as error:
        raise CTSliceSynthesisError(import_failure_message(error)) from None

    if is_nifti_path(request.input_path):
        nifti = read_nifti(request.input_path)
        volume = nifti.data
        axis = request.axis if request.axis is not None else thick_axis(voxel_spacing(nifti.affine))

        def write(path: str, array: np.ndarray) -> None:
            affine = upsampled_affine(nifti.affine, axis, request.scale)
            write_nifti(path, array, affine, nifti.header)

    else:
        if request.axis is None:
            raise CTSliceSynthesisError("--axis is required for .npy input (it has no geometry)")
        volume = np.load(request.input_path, allow_pickle=False)
        axis = request.axis

        def write(path: str, array: np.ndarray) -> None:
            write_atomically(path, lambda temporary: np.save(temporary, array, allow_pickle=False))

    check_volume(volume, request.scale, axis)
    refuse_label_map(volume)
    warning = intensity_warning(volume)
    if warning:
        print(f"warning: {warning}", flush=True)
    report(0.02, "loading the model")
    model = load_model(request.checkpoint, request.scale, request.device)
    weights_id, weights_sha256 = model.model_id, model.sha256  # provenance names the weights, adapted or not
    if cancelled():
        raise SynthesisCancelled("cancelled before the synthesis started")
    synthesis_start = 0.05
    if request.adapt_seconds > 0:
        report(0.05, "adapting to this scan")
        progress = sub_range(report, 0.05, 0.5)
        adapted = adapt_to_volume(
            model.networks, volume, axis=axis, device=model.device, time_budget_s=request.adapt_seconds,
            progress=progress, cancel=cancelled
        )
        model = prepare_model(adapted.networks, f"{model.model_id}+adapted{adapted.steps}", None, model.device)
        synthesis_start = 0.5
    result = synthesize_volume(
        volume,
        request.scale,
        model,
        axis=axis,
        progress=sub_range(report, synthesis_start, 0.97),
        cancel=cancelled,
        with_disagreement=bool(request.disagreement_path),
    )
    if cancelled():
        raise SynthesisCancelled("cancelled before the output was written")
    report(0.98, "writing the output")
    if request.disagreement_path:
        write(request.disagreement_path, result.disagreement.astype(np.float32, copy=False))
    write(request.output_path, result.volume)
    report(1.0, "done")
    return {
        "model_id": weights_id,
        "sha256": weights_sha256,
        "preset": model.preset,
        "device": str(model.device),
        "scale": request.scale,
        "axis": int(axis),
        "adapt_seconds": request.adapt_seconds,
        "seconds": round(time.monotonic() - started, 2),
    }


def main(argv: list) -> int:
    """Parse ``argv``, run, print the RESULT or ERROR line; the exit code says how it ended."""
    request = protocol.parse_command(argv)
    stop = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda *_: stop.set())
    try:
        info = synthesize(request, stop.is_set)
    except SynthesisCancelled:
        print("synthesis cancelled; nothing was written", flush=True)
        return protocol.EXIT_CANCELLED
    except CTSliceSynthesisError as error:
        print(protocol.format_failure(str(error)), flush=True)
        return protocol.EXIT_FAILED
    except Exception as error:  # anything else: one line for the parent, the traceback in the log
        traceback.print_exc(file=sys.stdout)
        print(protocol.format_failure(f"{type(error).__name__}: {error}"), flush=True)
        return protocol.EXIT_FAILED
    print(protocol.format_result(info), flush=True)
    return protocol.EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
