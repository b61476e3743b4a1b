"""File systems of a test's own (root only): a small tmpfs to fill up, a read-only bind mount,
files made immutable."""

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


@functools.cache
def can_make_immutable(folder: Path) -> bool:
    """Whether ``chattr +i`` on ``folder``'s file system stops writes through a descriptor
    already open (root, and a file system that enforces the flag so: ext4; not tmpfs)."""
    with tempfile.NamedTemporaryFile(dir=folder, buffering=0) as f:
        if subprocess.run(["chattr", "+i", f.name], capture_output=True).returncode:
            return False
        try:
            f.write(b"x")
        except OSError:
            return True
        finally:
            subprocess.run(["chattr", "-i", f.name], capture_output=True)
        return False


@contextlib.contextmanager
def immutable(*paths: Path):
    """``paths`` made immutable (``chattr +i``), as unwritable for root as for anyone, undone
    afterwards. Unlike a permission or a mount made read-only later, it stops writes through
    descriptors already open (where ``can_make_immutable``), as a file system turned read-only
    under a running program does."""
    subprocess.run(["chattr", "+i", *map(str, paths)], check=True, capture_output=True)
    try:
        yield paths
    finally:
        subprocess.run(["chattr", "-i", *map(str, paths)], capture_output=True)
