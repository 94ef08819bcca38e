"""The batch loop, with the Slicer-specific work passed in as functions so that it runs (and is tested) anywhere.

It prints one progress line per volume and ends with an exit code from :mod:`.batch_args`; every error is one
line. A failed volume does not stop the others; the exit code is then ``EXIT_FAILED``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from .batch_args import (
    EXIT_DEPENDENCIES,
    EXIT_FAILED,
    EXIT_OK,
    BatchError,
    BatchOptions,
    find_inputs,
    parse_batch_args,
    plan_outputs,
)
from .dependencies import DependencyError
from .process_protocol import one_line

Prepare = Callable[[BatchOptions], None]
SynthesizeFile = Callable[[Path, Path, BatchOptions], None]


def run_batch(
    argv: Sequence[str],
    synthesize_file: SynthesizeFile,
    prepare: Prepare = lambda options: None,
    echo: Callable[[str], None] = print,
) -> int:
    """Parse ``argv``, call ``prepare(options)`` once (dependencies) and ``synthesize_file(input, output, options)``
    for each volume; return the process exit code."""
    try:
        options = parse_batch_args(argv)
        pairs = plan_outputs(options, find_inputs(options.input))
    except BatchError as error:
        echo(f"error: {error}")
        return error.exit_code
    try:
        prepare(options)
    except DependencyError as error:
        echo(f"error: {error}")
        return EXIT_DEPENDENCIES
    failures = 0
    for index, (source, target) in enumerate(pairs, start=1):
        started = time.monotonic()
        try:
            synthesize_file(source, target, options)
        except Exception as error:  # one bad volume must not stop the batch
            failures += 1
            echo(f"[{index}/{len(pairs)}] FAILED {source}: {one_line(str(error)) or type(error).__name__}")
            continue
        echo(f"[{index}/{len(pairs)}] done {source} -> {target} ({time.monotonic() - started:.1f} s)")
    if failures:
        echo(f"error: {failures} of {len(pairs)} volumes failed")
        return EXIT_FAILED
    return EXIT_OK
