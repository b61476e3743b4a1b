"""examples/cluster runs the README's cluster commands: each `reer` command in them parses as
that command's options would, and the SLURM script is valid bash."""

import shlex
import subprocess
from pathlib import Path

import yaml

from agents.inspect import export
from agents.options import config_from_args, parse_args
from scorer import server

CLUSTER = Path(__file__).resolve().parents[2] / "examples" / "cluster"


def reer_commands(command) -> list[list[str]]:
    words = shlex.split(command[2]) if command[:2] == ["sh", "-c"] else command
    assert words[0] == "reer", words
    return [words[1:]]


def test_the_compose_files_reer_commands_parse():
    services = yaml.safe_load((CLUSTER / "docker-compose.yml").read_text())["services"]
    seen = set()
    for name, svc in services.items():
        if not svc.get("command") or "reer" not in " ".join(svc["command"]):
            continue
        for cmd, *args in reer_commands(svc["command"]):
            seen.add(cmd)
            if cmd == "run":
                cfg = config_from_args(parse_args(args))
                assert len(cfg.scorer.urls) == 2 and cfg.db.startswith("postgresql+psycopg://"), name
            elif cmd == "scorer":
                server.build_parser().parse_args(args)
            else:
                export.build_parser().parse_args(args)
    assert seen == {"run", "scorer", "export"}
    assert services["worker"]["deploy"]["replicas"] == 3


def test_the_slurm_script_is_valid_bash():
    subprocess.run(["bash", "-n", str(CLUSTER / "reer.sbatch")], check=True)
