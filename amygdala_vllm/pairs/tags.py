"""Emotion tag lines: find them at the end of a node, read them, and cut them off.

Agents end a memory node with one or more lines such as ``warmth:9 clarity:10``.
Those lines are labels, not text: if one leaked into the text the model sees,
the vector would learn the *word* "warmth" instead of the feeling. So the
parser is strict about what counts as a tag line and always returns the body
without them.

Rules (documented in docs/pairs.md, tested in tests/test_pairs_tags.py):

* A tag line is a line made only of ``name:score`` tokens separated by spaces
  or commas. A name starts with a letter and holds letters, digits, ``-`` and
  ``_``; it may be up to three such words separated by single spaces
  (``self doubt:7``), which is unambiguous because every score is a number.
  No space is allowed around the colon.
* Only *trailing* tag lines count: scanning from the end (blank lines are
  skipped), every tag-shaped line is taken, and the first other line ends the
  block. Tag-like text earlier in the body stays body.
* A score is an integer or decimal from 0 to 10. A trailing line that is
  tag-shaped but carries a bad value (``joy:11``, ``warmth:high``,
  ``calm:9/10``) makes the whole node malformed: :class:`MalformedTags`.
* Names are canonical: case-folded, with ``-``, ``_`` and spaces all turned
  into a single ``_`` (``Self-Doubt``, ``self_doubt`` and ``self doubt`` are
  all ``self_doubt``).
* When several trailing lines name the same emotion, the highest score wins:
  a node counts as strongly tagged if any agent tagged it strongly, and the
  result does not depend on the order of the lines.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MalformedTags",
    "ParsedNode",
    "canonical_name",
    "mention_pattern",
    "parse_tags",
    "format_tag_line",
]

_WORD = r"[^\W\d_][\w\-]*"
_NAME = rf"{_WORD}(?: {_WORD}){{0,2}}"
_SEP = r"[ \t,]+"
# A value as a sloppy agent might write it; only _SCORE is valid.
_LOOSE_VALUE = r"[\w.+\-][\w.+\-/%]*"
_SCORE = re.compile(r"(?:10(?:\.0+)?|\d(?:\.\d+)?)")
_TOKEN = re.compile(rf"({_NAME}):({_LOOSE_VALUE})")
_LINE = re.compile(rf"[ \t]*{_NAME}:{_LOOSE_VALUE}(?:{_SEP}{_NAME}:{_LOOSE_VALUE})*[ \t,]*")
_LINE_BREAKS = "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
_SEPARATORS = re.compile(r"[\s_\-]+")


class MalformedTags(ValueError):
    """A trailing tag line with a value that is not a score from 0 to 10."""


@dataclass(frozen=True)
class ParsedNode:
    """A node's text with its trailing tag lines removed, and the tags they carried."""

    text: str
    tags: dict[str, float]


def canonical_name(name: str) -> str:
    """The one spelling of an emotion name: case-folded, separators as single ``_``."""
    return _SEPARATORS.sub("_", name.strip().casefold()).strip("_")


def mention_pattern(name: str) -> re.Pattern[str]:
    """A regex matching ``name`` and its spelling variants as a whole word, any case.

    ``self_doubt`` matches "self-doubt", "Self doubt", "self_doubt" and
    "selfdoubt"; ``joy`` does not match "enjoy".
    """
    parts = [re.escape(p) for p in canonical_name(name).split("_") if p]
    body = r"[\s_\-]*".join(parts)
    return re.compile(rf"(?<![^\W_]){body}(?![^\W_])", re.IGNORECASE)


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() else value


def _read_line(line: str) -> dict[str, float]:
    tags: dict[str, float] = {}
    for name, value in _TOKEN.findall(line):
        if not _SCORE.fullmatch(value):
            raise MalformedTags(f"bad score {value!r} for {name!r} (expected a number from 0 to 10)")
        key = canonical_name(name)
        score = _number(value)
        tags[key] = max(score, tags.get(key, score))
    return tags


def parse_tags(content: str) -> ParsedNode:
    """Split ``content`` into its body and the tags of its trailing tag lines.

    The body is returned with surrounding whitespace stripped. Raises
    :class:`MalformedTags` if a trailing tag line carries an invalid score.
    """
    lines = content.splitlines(keepends=True)
    end = len(lines)
    tags: dict[str, float] = {}
    while end > 0:
        line = lines[end - 1]
        line = line.rstrip(_LINE_BREAKS)
        if line.strip() and not _LINE.fullmatch(line):
            break
        if line.strip():
            for key, score in _read_line(line).items():
                tags[key] = max(score, tags.get(key, score))
        end -= 1
    return ParsedNode(text="".join(lines[:end]).strip(), tags=tags)


def format_tag_line(tags: dict[str, float]) -> str:
    """The canonical tag line for ``tags`` (names sorted), e.g. ``clarity:10 warmth:9``."""
    return " ".join(f"{name}:{_format_score(score)}" for name, score in sorted(tags.items()))


def _format_score(score: float) -> str:
    return str(int(score)) if float(score).is_integer() else repr(float(score))
