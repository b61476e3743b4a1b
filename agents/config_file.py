"""``--config FILE`` and ``--dump-config``: a run's options read from a file and written to one.

Keys are the long flags without their dashes (``max-steps = 3``), each value checked as its flag's
would be. A flag overrides the file and an environment variable (``ENV``) overrides it too;
``dump_config`` writes the resolved options as TOML that reproduces the run, without secrets.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agents.errors import ConfigError


class Repeat(argparse.Action):
    """A flag that may be given several times: the values in their order. Given on the command
    line, they replace a ``--config`` file's (a default) instead of adding to them."""

    def __call__(self, parser, namespace, values, option_string=None):
        current = getattr(namespace, self.dest)
        setattr(namespace, self.dest, [*(current if current is not None and current is not self.default else []),
                                       values])


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


# Options an environment variable fills: the variable outranks a config file, a flag outranks both.
ENV = {"endpoint": "OPENAI_BASE_URL", "api_key": "OPENAI_API_KEY", "scorer_token": "REER_SCORER_TOKEN"}
# Not written by --dump-config: secrets, one-off actions, and the file options themselves.
NOT_DUMPED = {"help", "config", "dump_config", "api_key", "scorer_token", "force", "retry_failed"}


def read_config_file(path: Path, parser: argparse.ArgumentParser) -> dict:
    """``{dest: value}`` from a config file, each value checked as its flag's would be."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: cannot be read ({exc})") from None
    if path.suffix not in (".toml", ".yaml", ".yml", ".json"):
        raise ConfigError(f"--config {path}: not .toml, .yaml, .yml or .json")
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # tomllib, yaml and json each raise their own
        raise ConfigError(f"--config {path}: not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: must hold a table of options, not {type(data).__name__}")
    by_name = {flag[2:].replace("-", "_"): a for a in parser._actions for flag in a.option_strings
               if flag.startswith("--") and a.dest not in ("help", "config", "dump_config")}
    out = {}
    for key, value in data.items():
        action = by_name.get(str(key).replace("-", "_"))
        if action is None:
            raise ConfigError(f"--config {path}: unknown option {key!r} (keys are reer run's long flags without "
                              "the dashes, e.g. max-steps)")
        out[action.dest] = _coerce(path, key, action, value)
    return out


def _coerce(path: Path, key: str, action: argparse.Action, value):
    where = f"--config {path}: {key}"
    if isinstance(action, Repeat):
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
            raise ConfigError(f"{where}: must be a string or a list of strings, not {value!r}")
        return values
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: must be true or false, not {value!r}")
        return value
    if action.type is not None and isinstance(value, str):
        try:
            value = action.type(value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            if action.type in (int, float):
                raise ConfigError(f"{where}: must be a number, not {value!r}") from None
            raise ConfigError(f"{where}: {exc}") from None
    elif action.type in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise ConfigError(f"{where}: must be a number, not {value!r}")
    elif action.type is int and isinstance(value, float):
        raise ConfigError(f"{where}: must be a whole number, not {value!r}")
    elif action.type is json_object and not isinstance(value, dict):
        raise ConfigError(f"{where}: must be a table or a JSON object string")
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where}: must be one of {', '.join(map(str, action.choices))}, not {value!r}")
    return value


def dump_config(a: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    """The resolved options as TOML (after ``config_from_args`` filled the profile's defaults):
    ``--config`` with it reproduces the run's config."""
    lines = ["# reer run --config THIS_FILE: the resolved options of a run. Secrets are not written:",
             "# give the API key and scorer token by environment variable or flag."]
    for action in parser._actions:
        if action.dest in NOT_DUMPED or not action.option_strings:
            continue
        value = getattr(a, action.dest, None)
        if value is None:
            continue
        name = next(f for f in action.option_strings if f.startswith("--"))[2:]
        lines.append(f"{name} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):  # as its flag takes it: a JSON string (TOML has no null)
        value = json.dumps(value, ensure_ascii=False)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string
