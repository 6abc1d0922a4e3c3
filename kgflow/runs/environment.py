"""What a run records about the software and hardware it ran on."""
from __future__ import annotations

import importlib.metadata as md
import platform
import resource
import sys

import torch

TRACKED = ("kgflow", "torch", "torch_geometric", "lightning", "transformers", "peft", "pydantic",
           "numpy", "pandas")


def package_versions() -> dict[str, str]:
    out = {}
    for name in TRACKED:
        try:
            out[name] = md.version(name.replace("_", "-"))
        except md.PackageNotFoundError:
            try:
                out[name] = md.version(name)
            except md.PackageNotFoundError:
                out[name] = "not installed"
    return out


def accelerator() -> str:
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def describe(seed: int, fingerprint: str, plugins: list[dict]) -> dict:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "accelerator": accelerator(), "seed": seed, "data_fingerprint": fingerprint,
            "versions": package_versions(), "plugins": plugins}


def peak_rss_mb() -> float:
    """The process's peak resident memory (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def peak_gpu_mb() -> float | None:
    """The peak GPU memory torch allocated in this process (``None`` without CUDA)."""
    import torch

    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / (1024 * 1024)


def tune_allocator() -> bool:
    """Keep large freed blocks in glibc's heap instead of returning them to the OS.

    Full-graph training allocates and frees the same tens-of-megabyte tensors every batch; with
    glibc's defaults each one is a fresh ``mmap`` whose pages fault in again, which costs more than
    the arithmetic (KGIN: 160 -> 70 ms a batch). Peak memory is unchanged (the blocks are reused).
    Set ``KGFLOW_MALLOC_TUNING=0`` to leave the allocator alone. Returns whether it was tuned.
    """
    import os

    if os.environ.get("KGFLOW_MALLOC_TUNING", "1") == "0":
        return False
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    ok = mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    ok &= mallopt(M_TRIM_THRESHOLD, 1024 * 1024 * 1024)
    ok &= mallopt(M_TOP_PAD, 64 * 1024 * 1024)
    return bool(ok)


def release_memory() -> None:
    """Hand memory freed by data preparation back to the OS before training starts (a garbage
    collection, then glibc's ``malloc_trim``), so that it does not count on top of training's peak."""
    import gc

    gc.collect()
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim(0)


def _glibc(name: str):
    """A glibc function, or None off Linux or with another C library (e.g. musl)."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return None
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None
