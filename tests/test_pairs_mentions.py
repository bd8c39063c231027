"""MentionIndex gives the mention pattern's own counts, and FOLD is exactly re.IGNORECASE's view of ASCII."""

from __future__ import annotations

import re
import sys

from amygdala_vllm.pairs.mentions import FOLD, MentionIndex
from amygdala_vllm.pairs.tags import mention_pattern


def test_fold_holds_every_character_ignorecase_matches_with_an_ascii_letter_or_digit() -> None:
    every = "".join(chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF)
    found = {}
    for a in "abcdefghijklmnopqrstuvwxyz0123456789":
        for m in re.finditer(re.escape(a), every, re.IGNORECASE):
            if m.group() != a:
                found[ord(m.group())] = a
    assert found == FOLD


TEXTS = [
    "Joy came back; joyful is not joy's word here: JOY and joy_x count, enjoy does not.",
    "A \u212aindness (Kelvin K) and a \u017fadness (long s) and \u0131rritation and \u0130rritation.",
    "self-doubt, Self doubt, selfdoubt and self_doubt, but not selfish doubt.",
    "la la la",
    "caf\u00e9 \u00e9motion \u00e9motion",
    "nothing to see",
]
NAMES = ["joy", "kindness", "sadness", "irritation", "self_doubt", "la_la", "\u00e9motion", "absent"]


def test_counts_equal_the_pattern_on_every_text() -> None:
    index = MentionIndex(TEXTS, NAMES[:-2])  # two names left out of the index: counted by scanning
    for name in NAMES:
        want = {i: n for i, t in enumerate(TEXTS) if (n := len(mention_pattern(name).findall(t)))}
        assert index.counts(name) == want, name
    assert index.counts("joy", skip={0}) == {}
