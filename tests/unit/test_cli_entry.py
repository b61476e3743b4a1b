"""The ``reer`` console script dispatches to the modules' own entry points."""

import pytest

from agents import cli


def test_reer_dispatches_each_command_to_its_module(monkeypatch):
    called = {}
    for name, (module, _) in cli.COMMANDS.items():
        mod = pytest.importorskip(module)
        monkeypatch.setattr(mod, "main", lambda argv, name=name: called.setdefault(name, argv) and 0)
    for name in cli.COMMANDS:
        assert cli.main([name, "--x", "1"]) == 0
    assert called == {name: ["--x", "1"] for name in cli.COMMANDS}


def test_reer_without_a_known_command_says_how_to_use_it(capsys):
    assert cli.main([]) == 2 and "usage: reer COMMAND" in capsys.readouterr().err
    assert cli.main(["nope"]) == 2 and "unknown command 'nope'" in capsys.readouterr().err
    assert cli.main(["--help"]) == 0 and "export" in capsys.readouterr().out


def test_the_installed_script_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(sys.executable).parent / "reer"
    assert script.exists(), "reinstall the project (make setup) to get the reer script"
    p = subprocess.run([str(script), "export", "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "--db" in p.stdout
