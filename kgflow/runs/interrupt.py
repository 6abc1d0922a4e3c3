"""Stopping a run on SIGINT / SIGTERM without losing it.

The first signal asks the run to stop: during training and evaluation it stops at the end of the
current batch (never in the middle of writing a checkpoint), before that at once. The run
directory is marked ``interrupted`` and keeps ``checkpoints/last.ckpt`` from the last finished
evaluation, from which ``--resume`` continues exactly (batches are seeded by epoch, random states
travel in the checkpoint). A second signal stops at once.
"""
from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

import lightning as L

from kgflow.errors import KgflowError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunInterrupted(KgflowError):
    """The run was asked to stop by a signal; the exit code is the shell's ``128 + signal``."""

    def __init__(self, signum: int, message: str | None = None) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")


class StopOnSignal(L.Callback):
    """Turns SIGINT / SIGTERM into a clean stop at the next batch boundary (see the module doc)."""

    def __init__(self) -> None:
        self.requested: int | None = None
        #: while true (Lightning is training or evaluating) a signal waits for the batch's end
        self.armed = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Take over SIGINT and SIGTERM (only possible in the main thread; elsewhere a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in SIGNALS:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)

    def uninstall(self) -> None:
        """Give the signals back to whoever had them before."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None or not self.armed:  # a second signal, or nothing to wait for
            self.requested = signum
            raise RunInterrupted(signum)
        self.requested = signum

    def check(self) -> None:
        if self.requested is not None:
            raise RunInterrupted(self.requested)

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.check()

    def on_validation_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.check()

    def on_test_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.check()

    def on_train_epoch_end(self, *args: Any, **kwargs: Any) -> None:
        self.check()


def resume_hint(command: str, has_checkpoint: bool) -> str:
    """What to tell the user after an interruption; ``command`` is the run's own command line."""
    if has_checkpoint:
        return f"the run can continue from its last checkpoint: {command} --resume"
    return f"it stopped before its first checkpoint: start it again with {command} --overwrite"
