"""``pairs --neutral-texts FILE``: texts that express no emotion, for ``reduce``'s neutral statistics.

``reduce --neutral-variance`` and ``--method mlda`` need texts that carry none of
the concepts. Without a file they are derived (train texts that are a negative
of some concept and a positive of none); a file gives a deliberate set
instead, for instance plain factual prose (issue 15). The texts enter
``texts.jsonl`` like any other, so ``extract`` captures them with the rest, and
``dataset.json`` lists their ids under ``neutral``; they are in no example, so
no concept trains on them and ``validate`` never scores them.

Two layouts: ``*.jsonl`` holds one JSON object per line with a string ``text``
(other fields ignored); any other file holds one text per line. Blank lines
are skipped. Texts are stripped, compared with collapsed whitespace, and a
text already in the dataset (or repeated in the file) is kept once and counted
as a duplicate, so a labelled text never also counts as neutral.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import msgspec

from ..errors import FormatError, UsageError
from ..formats import read_input
from .select import normalise_whitespace

__all__ = ["NeutralTexts", "read_neutral_texts", "NEUTRAL_KEY_PREFIX"]

#: Keys of neutral texts in ``texts.jsonl``: ``neutral-texts:<line>`` (1-based line of the file).
NEUTRAL_KEY_PREFIX = "neutral-texts:"


@dataclass(frozen=True)
class NeutralTexts:
    """The usable texts of a ``--neutral-texts`` file, keyed by line, and what ``dataset.json`` records."""

    texts: dict[str, str]  # key -> text, in file order
    path: Path
    sha256: str
    lines: int  # non-blank lines read

    def without(self, taken: set[str]) -> tuple[dict[str, str], int]:
        """The texts whose collapsed form is not in ``taken`` nor earlier in the file, and how many were dropped."""
        seen = set(taken)
        kept: dict[str, str] = {}
        for key, text in self.texts.items():
            norm = normalise_whitespace(text)
            if norm not in seen:
                seen.add(norm)
                kept[key] = text
        return kept, len(self.texts) - len(kept)


def _text_of(line: bytes, where: str) -> str:
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        raise FormatError(f"{where}: not JSON ({exc})") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
        raise FormatError(f"{where}: expected a JSON object with a string \"text\"")
    return obj["text"]


def read_neutral_texts(path: Path) -> NeutralTexts:
    """Read a neutral-texts file (``.jsonl`` objects with ``text``, else one text per line).

    Errors name ``file:line``.
    """
    path = Path(path)
    data = read_input(path, what="neutral-texts file", error=UsageError)
    jsonl = path.suffix.lower() == ".jsonl"
    texts: dict[str, str] = {}
    lines = 0
    for n, raw in enumerate(data.splitlines(), start=1):
        where = f"{path}:{n}"
        if not raw.strip():
            continue
        lines += 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{where}: not UTF-8") from exc
        text = (_text_of(raw, where) if jsonl else line).strip()
        if text:
            texts[f"{NEUTRAL_KEY_PREFIX}{n}"] = text
    if not texts:
        raise UsageError(f"neutral-texts file {path} holds no text")
    return NeutralTexts(texts=texts, path=path, sha256=hashlib.sha256(data).hexdigest(), lines=lines)
