"""Synthesize thin slices for one volume in a background process, reporting progress on stdout.

The CTSliceSynthesis Slicer module runs this with ``PythonSlicer`` so that the GUI never waits on the network:
it writes the input voxels to a ``.npy`` file, starts this script, reads the ``@CTSS`` lines it prints (see
``CTSliceSynthesisLib/slicer_support/process_protocol.py``) and loads the output when it has exited. NIfTI files
(``.nii``, ``.nii.gz``) work too, with the thick axis taken from the affine unless ``--axis`` is given. The work
is ``CTSliceSynthesisLib/inference/pipeline.py``, the same as ``ct-slice-synthesis synthesize``.

Outputs are written atomically (a reader sees no file or a complete one). SIGTERM or SIGINT cancels: the run
stops at the engine's next check, writes nothing and exits with code 3.

    PythonSlicer synthesize_process.py --input in.npy --axis 0 --output out.npy --scale 2 [--device cpu]
        [--precision auto] [--fusion equal] [--adapt-steps 100] [--seed 0] [--adapt-seconds S]
        [--disagreement map.npy]
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
    """Run the synthesis pipeline for ``request`` (the one ``ct-slice-synthesis synthesize`` runs); returns what
    the RESULT line reports."""
    started = time.monotonic()
    report(0.0, "loading the engine")
    # torch is imported here, after the signal handlers are in place, so that a cancel during the import counts.
    # A package that is missing or fails to load (a broken or mismatched wheel) ends the run with one clear line.
    try:
        from CTSliceSynthesisLib.inference.pipeline import PipelineOptions, run_pipeline
    except (ImportError, OSError) as error:
        raise CTSliceSynthesisError(import_failure_message(error)) from None

    options = PipelineOptions(
        input_path=Path(request.input_path),
        output_path=Path(request.output_path),
        scale=request.scale,
        axis=request.axis,
        disagreement_path=Path(request.disagreement_path) if request.disagreement_path else None,
        checkpoint=Path(request.checkpoint) if request.checkpoint else None,
        device=request.device,
        precision=request.precision,
        fusion=request.fusion,
        adapt_steps=request.adapt_steps,
        adapt_seconds=request.adapt_seconds,
        seed=request.seed,
        spacing=request.spacing,
        slice_thickness=request.slice_thickness,
        thickness_source=request.thickness_source,
        overwrite=True,  # the module writes into a fresh temporary folder; outputs are replaced atomically
    )
    result = run_pipeline(options, progress=report, cancel=cancelled, log=lambda line: print(line, flush=True))
    geometry = result.info.geometry
    adaptation = result.adaptation
    return {
        "model_id": result.info.model_id,  # provenance names the weights as loaded, adapted or not
        "sha256": result.info.sha256,
        "preset": result.info.preset,
        "device": str(result.info.device),
        "scale": request.scale,
        "axis": int(result.info.axis),
        "adapt_steps": request.adapt_steps,
        "adapt_seconds": request.adapt_seconds,  # the wall-time cap (None: none)
        "adapt_seed": request.seed,
        "adapted_steps": result.adapted_steps,
        "adapt_capped": bool(adaptation is not None and adaptation.capped),
        "slice_spacing_mm": geometry.spacing_mm if geometry else None,
        "slice_thickness_mm": round(geometry.thickness_mm, 4) if geometry else None,
        "thickness_source": geometry.thickness_source if geometry else None,
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
