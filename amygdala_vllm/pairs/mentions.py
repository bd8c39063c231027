"""Which texts name an emotion, found through a word index instead of one regex scan per (emotion, text).

The negative rule (:func:`~.select.polarity`) counts an emotion's mentions in
a text with :func:`~.tags.mention_pattern`. Doing that for every emotion over
every text is ``emotions x texts`` regex scans: on a 20,000-node graph with
200 emotions, 8 million scans, 60 % of a 12-minute ``pairs`` run (cProfile,
2026-12-04). Nearly every count is zero, and a zero can be known without
the scan.

A mention starts at the start of a run of letters and digits (the pattern's
look-behind) with the name's first word, matched case-insensitively the way
``re.IGNORECASE`` matches. For a name whose first word is ASCII, such a
match exists only if the text, folded by :data:`FOLD` (ASCII upper case to
lower, and the four non-ASCII letters that ``re.IGNORECASE`` equates with an
ASCII letter), holds that word: as a whole run for a one-word name (the
pattern's look-ahead ends it there), as a substring for a longer name.
Only texts passing that test are scanned with the pattern itself, so
every count is the pattern's own; a name whose first word is not ASCII is
scanned in every text, as before.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence

from .tags import canonical_name, mention_pattern

__all__ = ["FOLD", "MentionIndex"]

#: Case folding as ``re.IGNORECASE`` sees ASCII letters: every character that it matches with an ASCII letter
#: or digit maps to that (lower-case) character; nothing else changes, so runs of letters keep their bounds.
#: The non-ASCII entries are all of Python's (tests/test_pairs_select.py recomputes them over every code point).
FOLD = {**{ord(c): c.lower() for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"},
        0x130: "i", 0x131: "i", 0x17F: "s", 0x212A: "k"}
_RUN = re.compile(r"[^\W_]+")


class MentionIndex:
    """The folded text and its runs of letters/digits, per text of ``texts``, for mention counts by name."""

    def __init__(self, texts: Sequence[str], names: Iterable[str]):
        self.texts = texts
        self.folded = [t.translate(FOLD) for t in texts]
        firsts = {w for w in (_first_word(n) for n in names) if w.isascii()}
        self._indexed = frozenset(firsts)
        self._by_word: dict[str, list[int]] = defaultdict(list)
        for i, folded in enumerate(self.folded):
            for word in firsts.intersection(_RUN.findall(folded)):
                self._by_word[word].append(i)

    def counts(self, name: str, skip: set[int] | frozenset[int] = frozenset()) -> dict[int, int]:
        """Mention counts of ``name`` in every text that has one (text position -> count), ``skip`` left out."""
        words = canonical_name(name).split("_")
        pattern = mention_pattern(name)
        if not words[0].isascii():
            maybe: Iterable[int] = range(len(self.texts))
        elif len(words) == 1 and words[0] in self._indexed:
            maybe = self._by_word.get(words[0], ())
        else:
            maybe = (i for i, folded in enumerate(self.folded) if words[0] in folded)
        out = {}
        for i in maybe:
            if i not in skip and (n := len(pattern.findall(self.texts[i]))):
                out[i] = n
        return out


def _first_word(name: str) -> str:
    return canonical_name(name).split("_")[0]
