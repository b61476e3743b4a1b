import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub in tests
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """The tiny models, built once per test session. Under pytest-xdist each worker has its own
    temporary folder below one shared root: the first worker to get here builds them there, the
    others wait on the lock and load what it saved (training them costs CPU the suite is short of)."""
    from filelock import FileLock

    from tests.support.tiny_models import save_tiny

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    dirs = {kind: root / "tiny" / kind for kind in ("llama", "gemma3")}
    with FileLock(str(root / "tiny.lock")):
        for kind, path in dirs.items():
            if not (path / "built").exists():
                save_tiny(kind, path)
                (path / "built").touch()
    return dirs


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """A store's database: a SQLite file, and a fresh schema of this machine's PostgreSQL."""
    if request.param == "sqlite":
        yield str(tmp_path / "x.db")
        return
    from tests.support.pg import pg_schema

    with pg_schema() as url:
        yield url
