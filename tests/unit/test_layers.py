"""The packages' layers: store/ and prompts/ at the bottom, scorer/ above them, agents/ on top.
No arrow points back up, and the scorer's two halves load only what they need."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# what each package may import from the project (itself included)
ALLOWED = {"store": {"store"}, "prompts": {"prompts"}, "scorer": {"scorer", "prompts", "store"},
           "agents": {"agents", "scorer", "prompts", "store"}}


def project_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names & set(ALLOWED)


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_package_imports_a_layer_above_it(package):
    wrong = {str(p.relative_to(ROOT)): sorted(project_imports(p) - ALLOWED[package])
             for p in (ROOT / package).rglob("*.py")}
    assert not {k: v for k, v in wrong.items() if v}


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_the_scorer_client_loads_no_torch_no_server_and_no_agents():
    mods = loaded_after("from scorer import ScorerClient")
    assert "torch" not in mods and "scorer.server" not in mods and "transformers" not in mods
    assert not {m for m in mods if m.split(".")[0] == "agents"}


def test_a_run_loads_no_torch_until_a_vllm_scorer_needs_its_tokenizer():
    mods = loaded_after("import agents.run")
    assert "torch" not in mods and "transformers" not in mods


def test_the_scorer_server_loads_no_http_client_and_no_agents_until_it_needs_the_model():
    mods = loaded_after("import scorer.server")
    assert not {m for m in mods if m.split(".")[0] in ("agents", "httpx", "aiohttp", "openai", "torch")}


def test_the_public_surface_is_what_it_says():
    import scorer

    assert all(hasattr(scorer, name) for name in scorer.__all__)
