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
    from tests.support.tiny_models import save_tiny

    base = tmp_path_factory.mktemp("tiny")
    return {kind: save_tiny(kind, base / kind) for kind in ("llama", "gemma3")}


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path):
    """A store's database: a SQLite file, and a fresh schema of this machine's PostgreSQL."""
    if request.param == "sqlite":
        yield str(tmp_path / "x.db")
        return
    from tests.support.pg import pg_schema

    with pg_schema() as url:
        yield url
