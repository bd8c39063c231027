"""``pairs --neutral-texts FILE``: texts that express no emotion, for ``reduce``'s neutral statistics.

``reduce --neutral-variance`` and ``--method mlda`` need texts that carry none of
the concepts. Without a file they are derived (train texts that are a negative
of some concept and a positive of none); a file gives a deliberate set
instead, for instance plain factual prose (issue 15). The texts enter
``texts.jsonl`` like any other, so ``extract`` captures them with the rest, and
``dataset.json`` lists their ids under ``neutral``; they are in no example, so
no concept trains on them and ``validate`` never scores them.

The file is read like ``validate --ood``'s (:mod:`amygdala_vllm.text_file`):
JSONL objects with a string ``text`` when the first non-blank line starts with
``{``, else one text per line; blank lines skipped. Texts are stripped, compared with collapsed whitespace, and a
text already in the dataset (or repeated in the file) is kept once and counted
as a duplicate, so a labelled text never also counts as neutral.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import FormatError
from ..text_file import read_text_lines
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


def read_neutral_texts(path: Path) -> NeutralTexts:
    """Read a neutral-texts file (layout and errors: :mod:`amygdala_vllm.text_file`); texts are stripped."""
    path = Path(path)
    numbered = read_text_lines(path, "--neutral-texts file")
    texts = {f"{NEUTRAL_KEY_PREFIX}{n}": text.strip() for n, text in numbered if text.strip()}
    if not texts:
        raise FormatError(f"--neutral-texts file {path} holds no text")
    return NeutralTexts(texts=texts, path=path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                        lines=len(numbered))
