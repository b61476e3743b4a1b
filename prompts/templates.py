"""Loading and filling the prompt templates."""

from __future__ import annotations

import hashlib

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Lang = Literal["en", "zh"]

BUILTIN_DIR = Path(__file__).parent

# Every template and the fields it must use (a user's override that drops one is an error,
# because the search would then silently lose e.g. the target answer).
PROMPT_NAMES: dict[str, frozenset[str]] = {
    "initial_thinking": frozenset({"question", "answer"}),
    "segment_edit": frozenset({"question", "answer", "before", "segment", "after"}),
    "standard_inference": frozenset({"question"}),
    "standard_inference_short": frozenset({"question"}),
    "edit_lead_in": frozenset(),
}
# The scorer's standard-inference prompt, by the name users choose it with: "brief" conditions
# the answer on a writing-thinking brief with the elements of the reference's; "short" is a
# two-line instruction.
SCORING_PROMPTS: dict[str, str] = {"brief": "standard_inference", "short": "standard_inference_short"}

_FIELD = re.compile(r"\{(\w+)\}")
_CJK = re.compile(r"[\u4e00-\u9fff]")


class PromptError(Exception):
    """A prompt template is missing, unknown, or lacks a field it needs."""


def detect_lang(question: str) -> Lang:
    """The reference's rule: Chinese when the question holds a CJK unified ideograph."""
    return "zh" if _CJK.search(question) else "en"


@dataclass(frozen=True)
class PromptSet:
    """The templates, built-ins overlaid by files under ``prompts_dir`` when given."""

    prompts_dir: Path | None = None
    _cache: dict[tuple[str, str], str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        """A ``prompts_dir`` that would silently change nothing (missing, a file, holding no
        prompt file) or could not be read is refused here, before anything runs; every file it
        overrides is loaded now, so a bad one stops the run at once too."""
        if self.prompts_dir is None:
            return
        d = Path(self.prompts_dir)
        if not d.exists():
            raise PromptError(f"--prompts-dir {d} does not exist")
        if not d.is_dir():
            raise PromptError(f"--prompts-dir {d} is not a directory")
        found = [(name, lang) for lang in ("en", "zh") for name in PROMPT_NAMES if (d / lang / f"{name}.txt").is_file()]
        if not found:
            expected = ", ".join(f"{n}.txt" for n in sorted(PROMPT_NAMES))
            raise PromptError(f"--prompts-dir {d} holds no prompt file: put any of {expected} under {d}/en/ or {d}/zh/")
        for name, lang in found:
            self.template(name, lang)

    def template(self, name: str, lang: Lang) -> str:
        if name not in PROMPT_NAMES:
            raise PromptError(f"unknown prompt {name!r}; known: {', '.join(sorted(PROMPT_NAMES))}")
        key = (name, lang)
        if key not in self._cache:
            self._cache[key] = self._load(name, lang)
        return self._cache[key]

    def _load(self, name: str, lang: Lang) -> str:
        rel = Path(lang) / f"{name}.txt"
        path = BUILTIN_DIR / rel
        if self.prompts_dir is not None and (Path(self.prompts_dir) / rel).is_file():
            path = Path(self.prompts_dir) / rel
        if not path.is_file():
            raise PromptError(f"prompt file {path} not found")
        try:
            text = path.read_text(encoding="utf-8").rstrip("\n")
        except UnicodeDecodeError as exc:
            raise PromptError(f"prompt file {path} is not UTF-8 (byte {exc.start}); save it as UTF-8") from None
        except OSError as exc:
            raise PromptError(f"prompt file {path} cannot be read: {exc.strerror}") from None
        missing = PROMPT_NAMES[name] - set(_FIELD.findall(text))
        if missing:
            raise PromptError(f"prompt {path} must use the field(s) {', '.join('{' + m + '}' for m in sorted(missing))}")
        return text

    def render(self, name: str, lang: Lang, **fields: str) -> str:
        """Fill ``{field}`` placeholders. Only known field names are replaced, in one pass, so
        braces inside the question or the answer (code, LaTeX) are never interpreted."""
        template = self.template(name, lang)
        allowed = PROMPT_NAMES[name]
        if set(fields) != allowed:
            raise PromptError(f"prompt {name!r} takes fields {sorted(allowed)}, got {sorted(fields)}")
        return _FIELD.sub(lambda m: fields[m.group(1)] if m.group(1) in allowed else m.group(0), template)

    def identity(self, name: str) -> str:
        """A short hash of a prompt's templates in every language: a scorer and a run that
        agree on it score with the same prompt, whatever files it came from."""
        h = hashlib.sha256()
        for lang in ("en", "zh"):
            h.update(self.template(name, lang).encode() + b"\x00")
        return h.hexdigest()[:16]

    def fingerprint(self) -> dict[str, str]:
        """Every template's text, for the run's config (a changed prompt changes the search)."""
        return {f"{lang}/{name}": self.template(name, lang) for name in PROMPT_NAMES for lang in ("en", "zh")}
