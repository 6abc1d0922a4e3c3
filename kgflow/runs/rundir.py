"""Run directories: written atomically, never overwritten unless asked, resumable.

Layout::

    run.json         state (running / finished / failed), kgflow version, timestamps
    resolved.yaml    the pipeline after extends and --set, written before any work
    environment.json versions, seed, accelerator, data fingerprint
    graph.json       the graph report
    checkpoints/     best.ckpt and last.ckpt
    logs/            Lightning's CSV log (metrics per epoch)
    metrics.json     valid / test metrics per group and timing
    test_per_user.csv  every test metric per user (for paired comparisons)
    report.md        a readable summary
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from kgflow.errors import RunDirError

RUN_FORMAT = 1


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


class RunDir:
    """One run's output folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._replaced: Path | None = None
        self._lock: Any = None

    @property
    def lock_file(self) -> Path:
        """Beside the folder (which ``--overwrite`` renames), so one lock guards the path."""
        return self.path.parent / f".{self.path.name}.lock"

    def acquire(self) -> None:
        """Take the run's lock, or refuse: two kgflow processes never write one run directory.
        Held until :meth:`finish` or :meth:`fail`; the OS drops it if the process dies."""
        from kgflow.data.store import exclusive

        lock = exclusive(self.lock_file, wait=False)
        try:
            lock.__enter__()
        except BlockingIOError:
            raise RunDirError(f"{self.path}: another kgflow process is writing this run directory "
                              f"(lock {self.lock_file}); wait for it, or write elsewhere with --out") from None
        self._lock = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None
            self.lock_file.unlink(missing_ok=True)

    def refuse_protected(self, protected: dict[str, Path]) -> None:
        """Refuse, whatever the flags, a run directory that is (or contains) a folder kgflow must
        never replace: the current directory, the pipeline's folder, the data, the data home."""
        target = self.path.expanduser().resolve()
        for what, path in protected.items():
            path = Path(path).expanduser().resolve()
            if target == path or target in path.parents:
                raise RunDirError(f"--out {self.path} is {'' if target == path else 'a folder above '}"
                                  f"{what} ({path}); a run directory must be a folder of its own, "
                                  "e.g. runs/<name>")

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def status_file(self) -> Path:
        return self.path / "run.json"

    def is_run(self) -> bool:
        return self.status_file.is_file() or (self.path / "resolved.yaml").is_file()

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {}

    def check(self, *, overwrite: bool = False, resume: bool = False) -> None:
        """Refuse early (writing nothing) when the folder cannot be used as asked."""
        if resume:
            if not self.is_run():
                raise RunDirError(f"{self.path}: nothing to resume (no run.json); start a new run "
                                  "without --resume")
            if not (self.checkpoints / "last.ckpt").is_file():
                raise RunDirError(f"{self.path}: no checkpoints/last.ckpt to resume from")
            return
        if self.path.exists() and not self.path.is_dir():
            raise RunDirError(f"{self.path} is a file, not a run directory")
        if self.path.exists() and any(self.path.iterdir()):
            if not self.is_run():  # --overwrite replaces kgflow's own runs, nothing else
                raise RunDirError(f"{self.path} is not empty and is not a kgflow run directory (no "
                                  "run.json); kgflow never replaces it, even with --overwrite: "
                                  "choose another --out")
            if not overwrite:
                raise RunDirError(f"{self.path} holds a run; pass --overwrite to replace it, --resume "
                                  "to continue it, or --out to write elsewhere")

    def prepare(self, *, overwrite: bool = False, resume: bool = False) -> None:
        """Create the folder, refusing to replace an existing run unless ``overwrite``."""
        self.check(overwrite=overwrite, resume=resume)
        if resume:
            return
        if self.path.exists() and any(self.path.iterdir()):
            # Keep the old run until the new one has finished, so a failed run loses nothing.
            self._replaced = self.path.with_name(f".{self.path.name}.replaced-{int(time.time())}")
            self.path.rename(self._replaced)
        self.path.mkdir(parents=True, exist_ok=True)

    def set_state(self, state: str, **extra: Any) -> None:
        from kgflow import __version__

        status = self.status()
        status.update({"format": RUN_FORMAT, "kgflow": __version__, "state": state,
                       "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, **extra)
        status.setdefault("started", status["updated"])
        atomic_write_json(self.status_file, status)

    def finish(self) -> None:
        self.set_state("finished")
        if self._replaced is not None:
            shutil.rmtree(self._replaced, ignore_errors=True)
            self._replaced = None
        self.release()

    def fail(self, error: str, state: str = "failed", **extra: Any) -> None:
        """Record why the run stopped (``state``: failed, or interrupted by a signal)."""
        if self.path.is_dir():
            self.set_state(state, error=error, **extra)
        if self._replaced is not None:
            logging.getLogger("kgflow.run").warning(f"the previous run is kept at {self._replaced}")
        self.release()
