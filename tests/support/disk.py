"""File systems of a test's own (root only): a small tmpfs to fill up, a read-only bind mount."""

from __future__ import annotations

import contextlib
import functools
import subprocess
import tempfile
from pathlib import Path


@functools.cache
def can_mount() -> bool:
    with tempfile.TemporaryDirectory() as d:
        if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d], capture_output=True).returncode:
            return False
        subprocess.run(["umount", d], capture_output=True)
        return True


@contextlib.contextmanager
def mounted(target: Path, *args: str):
    """``mount ARGS TARGET``, undone afterwards."""
    subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def tmpfs(folder: Path, size: str):
    folder.mkdir()
    return mounted(folder, "-t", "tmpfs", "-o", f"size={size}", "tmpfs")


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` (a file or a folder) read-only: root writes through permissions, not through this."""
    with mounted(path, "--bind", str(path)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True)
        yield path


def fill(folder: Path) -> Path:
    """Take every free byte of ``folder``'s file system, even while something else writes to it."""
    filler = folder / "filler"
    with open(filler, "ab", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            block = bytes(size)
            with contextlib.suppress(OSError):  # ENOSPC: on to smaller blocks
                while True:
                    f.write(block)
    return filler
