"""The README is the user's door: its options are the CLI's, no more and no less."""

import re
from pathlib import Path

from agents.options import build_parser

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")


def test_the_options_section_lists_exactly_the_options_of_reer_run_help():
    section = README[README.index("### Options"):README.index("### Faithful to the reference")]
    documented = set(re.findall(r"`(--[a-z][a-z-]*)`", section))
    real = {s for action in build_parser()._actions for s in action.option_strings if s.startswith("--")} - {"--help"}
    assert documented == real, {"missing from README": sorted(real - documented),
                                "not an option": sorted(documented - real)}


def test_the_readme_is_a_users_door_not_a_lab_notebook():
    assert len(README) < 12_000
