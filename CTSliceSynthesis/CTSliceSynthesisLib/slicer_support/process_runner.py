"""Run the background synthesis process without blocking the caller, read its output, end its whole process tree.

The caller polls (Slicer: from a ``qt.QTimer`` on the main thread); a reader thread only moves output lines into a
queue and never touches MRML or Qt. ``PythonSlicer`` is a launcher that starts the real interpreter as a child,
so cancelling must end the process tree, not just the launcher: the process gets its own process group (POSIX)
or is ended with ``taskkill /T`` (Windows).
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence

from .process_protocol import EXIT_CANCELLED, EXIT_OK, Failure, Progress, Result, parse_line

CANCEL_GRACE_SECONDS = 5.0
LOG_TAIL_LINES = 5


@dataclass(frozen=True)
class Outcome:
    """How a run ended: ``status`` is ``completed``, ``cancelled`` or ``failed``; ``message`` is one line."""

    status: str
    message: str
    result: Dict = field(default_factory=dict)


def python_slicer_executable() -> str:
    """Slicer's ``PythonSlicer`` launcher when on ``PATH`` (inside Slicer it is), else this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def start_process(command: Sequence[str], env: Optional[Mapping[str, str]] = None) -> subprocess.Popen:
    """Start ``command`` in its own process group, stdout and stderr merged, UTF-8 text, no console window."""
    environment = dict(os.environ if env is None else env)
    environment.update({"PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"})
    options: Dict = {}
    if os.name == "nt":
        options["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW
    else:
        options["start_new_session"] = True
    return subprocess.Popen(
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=environment,
        **options,
    )


def terminate_process_tree(process: subprocess.Popen, force: bool = False) -> None:
    """Ask ``process`` and everything it started to stop (SIGTERM to its group), or kill them with ``force``.

    On Windows the tree is always killed (``taskkill /T /F``); the caller removes the files it left behind.
    """
    if process.poll() is not None:
        return
    if os.name == "nt":
        subprocess.run(
            ["taskkill", "/T", "/F", "/PID", str(process.pid)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            creationflags=subprocess.CREATE_NO_WINDOW,
            check=False,
        )
        return
    try:
        os.killpg(process.pid, signal.SIGKILL if force else signal.SIGTERM)
    except ProcessLookupError:
        pass


class SynthesisProcess:
    """One background run: start it, :meth:`poll` it until it returns an :class:`Outcome`, or :meth:`cancel` it."""

    def __init__(
        self,
        command: Sequence[str],
        on_progress: Callable[[float, str], None],
        on_log: Callable[[str], None],
        env: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._on_progress = on_progress
        self._on_log = on_log
        self._lines: "queue.Queue[str]" = queue.Queue()
        self._result: Optional[Result] = None
        self._failure: Optional[Failure] = None
        self._tail: List[str] = []
        self._cancel_requested = False
        self._kill_timer: Optional[threading.Timer] = None
        self._process = start_process(command, env)
        self._reader = threading.Thread(target=self._read_output, name="CTSliceSynthesis-output", daemon=True)
        self._reader.start()

    @property
    def cancel_requested(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._cancel_requested

    def _read_output(self) -> None:
        for line in self._process.stdout:
            self._lines.put(line.rstrip("\r\n"))
        self._process.stdout.close()

    def poll(self) -> Optional[Outcome]:
        """Hand queued output to the callbacks; the :class:`Outcome` once the process has exited, else ``None``."""
        finished = not self._reader.is_alive()  # read before draining, so no line can arrive after the last drain
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            self._handle(line)
        if not finished:
            return None
        return self._outcome(self._process.wait())

    def _handle(self, line: str) -> None:
        message = parse_line(line)
        if isinstance(message, Progress):
            self._on_progress(message.fraction, message.stage)
            return
        if isinstance(message, Result):
            self._result = message
        elif isinstance(message, Failure):
            self._failure = message
        else:
            self._tail = (self._tail + [line])[-LOG_TAIL_LINES:]
        self._on_log(line)

    def _outcome(self, returncode: int) -> Outcome:
        if self._kill_timer is not None:
            self._kill_timer.cancel()
        if self._cancel_requested or returncode == EXIT_CANCELLED:  # a cancel wins over a result that raced it
            return Outcome("cancelled", "synthesis cancelled")
        if returncode == EXIT_OK and self._result is not None:
            return Outcome("completed", "synthesis completed", dict(self._result.info))
        if self._failure is not None:
            return Outcome("failed", self._failure.message)
        detail = f": {self._tail[-1]}" if self._tail else ""
        return Outcome("failed", f"the synthesis process exited with code {returncode}{detail}")

    def cancel(self, grace_seconds: float = CANCEL_GRACE_SECONDS) -> None:
        """Ask the process tree to stop now and kill it if it is still running after ``grace_seconds``."""
        if self._cancel_requested:
            return
        self._cancel_requested = True
        terminate_process_tree(self._process)
        self._kill_timer = threading.Timer(grace_seconds, terminate_process_tree, (self._process, True))
        self._kill_timer.daemon = True
        self._kill_timer.start()

    def wait(self, idle: Callable[[], None], interval_seconds: float = 0.1) -> Outcome:
        """Poll until the run ends, calling ``idle`` between polls (Slicer: process GUI events)."""
        while True:
            outcome = self.poll()
            if outcome is not None:
                return outcome
            idle()
            time.sleep(interval_seconds)
