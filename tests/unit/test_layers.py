"""The packages' layers: store/ and prompts/ at the bottom, scorer/ above them, agents/ on top,
and agents/'s own sub-packages in one direction (docs/architecture.md draws them). No arrow
points back up, the scorer's two halves load only what they need, the commands that read a
run load none of its machinery, and no module or function outgrows a sitting."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# what each package may import from the project (itself included)
ALLOWED = {"store": {"store"}, "prompts": {"prompts"}, "scorer": {"scorer", "prompts", "store"},
           "agents": {"agents", "scorer", "prompts", "store"}}


# what each part of agents/ may import from agents/ (the modules at its top are the command
# line and the run's start-up: "options", "config", ...). The run wires them all; generation
# never reaches the search; the services know neither; inspection knows only the options.
AGENTS_ALLOWED = {
    "generation": {"generation", "config", "errors", "watch"},
    "search": {"search", "generation", "services", "watch", "config", "errors"},
    "services": {"services", "config", "errors"},
    "watch": {"watch", "config"},
    "inspect": {"inspect", "config", "config_file", "errors", "options"},
    # the fleet on Ray runs the same worker as the terminal does, in its actors
    "cluster": {"cluster", "worker", "search", "services", "watch", "config", "errors"},
}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 350, 60


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def project_imports(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(path)} & set(ALLOWED)


def agents_parts(path: Path) -> set[str]:
    """The parts of agents/ that ``path`` imports: a sub-package's name or a top module's."""
    return {name.split(".")[1] for name in imported_modules(path)
            if name.startswith("agents.") and len(name.split(".")) > 1}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_package_imports_a_layer_above_it(package):
    wrong = {str(p.relative_to(ROOT)): sorted(project_imports(p) - ALLOWED[package])
             for p in (ROOT / package).rglob("*.py")}
    assert not {k: v for k, v in wrong.items() if v}


@pytest.mark.parametrize("part", sorted(AGENTS_ALLOWED))
def test_no_part_of_agents_imports_one_it_should_not(part):
    assert (ROOT / "agents" / part / "__init__.py").read_text().startswith('"""'), "a sub-package says what it holds"
    wrong = {str(p.relative_to(ROOT)): sorted(agents_parts(p) - AGENTS_ALLOWED[part])
             for p in (ROOT / "agents" / part).rglob("*.py")}
    assert not {k: v for k, v in wrong.items() if v}


def test_the_layer_rules_see_an_arrow_back_up(tmp_path):
    """The rules above could pass by reading nothing: a file with the wrong import fails them."""
    bad = tmp_path / "bad.py"
    bad.write_text("from agents.search.record import RecordSearch\nimport agents.generation.router\n")
    assert agents_parts(bad) == {"search", "generation"}
    assert agents_parts(bad) - AGENTS_ALLOWED["inspect"] == {"search", "generation"}


def test_every_module_and_function_fits_in_a_sitting():
    too_long = []
    for package in ALLOWED:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            name = str(path.relative_to(ROOT))
            if len(text.splitlines()) > MAX_MODULE_LINES:
                too_long.append(f"{name}: {len(text.splitlines())} lines")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    lines = node.end_lineno - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        too_long.append(f"{name}: {node.name}() {lines} lines")
    assert not too_long


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


def test_the_commands_that_read_a_run_load_none_of_its_machinery():
    mods = loaded_after("import agents.inspect.status, agents.inspect.show, agents.inspect.report, "
                        "agents.inspect.export, agents.inspect.serve.server, agents.inspect.serve.app")
    run_parts = {"generation", "search", "services", "watch", "run"}
    assert not {m for m in mods if m.split(".")[0] == "agents" and m.count(".") and m.split(".")[1] in run_parts}
    assert not mods & {"openai", "httpx", "aiohttp", "torch", "transformers", "scorer.server"}


def test_the_public_surface_is_what_it_says():
    import scorer

    assert all(hasattr(scorer, name) for name in scorer.__all__)
