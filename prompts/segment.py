"""Segmentation of thinking traces and answers (section 3 of the reference algorithm).

The segments are a *partition*: ``"".join(segment_text(t)) == t`` for every text. Separators
(a blank line plus any whitespace after it) and short pieces are carried into the next long
piece, so a segment starts with the whitespace that preceded it.
"""

from __future__ import annotations

import re

MIN_SEGMENT_CHARS = 100  # reference: pieces shorter than this are merged into the next one

_BLANK_LINE = re.compile(r"\n\n\s*")  # "\n\n" and the whitespace run after it
_NEWLINE = re.compile(r"\n\s*")  # fallback: any line break
# \[ ... \]: never split inside. An unclosed \[ runs to the end of the text, as in the reference,
# whose split keeps everything after it in one piece.
_LATEX_DISPLAY = re.compile(r"\\\[.*?(?:\\\]|\Z)", re.DOTALL)


def _pieces(text: str, separator: re.Pattern[str]) -> list[str]:
    """Alternating text and separator pieces, skipping separators inside LaTeX display blocks."""
    protected = [m.span() for m in _LATEX_DISPLAY.finditer(text)]
    pieces, start = [], 0
    for m in separator.finditer(text):
        if any(a < m.start() < b for a, b in protected):
            continue
        pieces += [text[start : m.start()], m.group(0)]
        start = m.end()
    pieces.append(text[start:])
    return [p for p in pieces if p]


def _merge(pieces: list[str], min_chars: int) -> list[str]:
    segments: list[str] = []
    held = ""
    for piece in pieces:
        if not piece.strip() or len(piece) < min_chars:
            held += piece
        else:
            segments.append(held + piece)
            held = ""
    if held:
        if segments:
            segments[-1] += held
        else:
            segments.append(held)
    return segments


def segment_text(text: str, min_chars: int = MIN_SEGMENT_CHARS) -> list[str]:
    """Split at blank lines; fall back to single line breaks when that gives one segment or none."""
    segments = _merge(_pieces(text, _BLANK_LINE), min_chars)
    if len(segments) <= 1:
        segments = _merge(_pieces(text, _NEWLINE), min_chars)
    return segments


def join_nonempty(*parts: str) -> str:
    """The reference's ``"\\n\\n".join`` of the parts that are not empty."""
    return "\n\n".join(p for p in parts if p)
