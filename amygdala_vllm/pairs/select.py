"""Which texts are positives and negatives for which emotion, and which are held out.

Everything downstream trains on what this module chooses, so every choice is
deterministic (a function of the inputs and ``seed`` only, never of dict order
or of the order a server listed the nodes in) and every rule is one small
function with a test of its own:

* :func:`prepare_texts`: tags parsed and stripped, too-short and malformed
  nodes skipped, identical texts (after whitespace normalisation) merged.
* :func:`polarity`: positive, negative or neither for one emotion.
* :func:`is_heldout`: a per-node split, the same node on the same side for
  every emotion, so validation only ever sees texts no vector was trained on.
* :func:`choose_emotions`: curated list and data-driven top-N, together.
* :func:`select_examples`: the cap, the balance, and length-matched negatives
  so that text length is not what the vector learns.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ..errors import UsageError
from .mentions import MentionIndex
from .nodes import Node
from .tags import MalformedTags, canonical_name, mention_pattern, parse_tags

__all__ = [
    "Unit",
    "UnitIndex",
    "Rules",
    "Example",
    "normalise_whitespace",
    "prepare_texts",
    "is_heldout",
    "polarity",
    "parse_emotion_list",
    "choose_emotions",
    "select_examples",
]

log = logging.getLogger(__name__)

Polarity = Literal["positive", "negative"]


@dataclass(frozen=True)
class Unit:
    """One unique text: the node key it is filed under, the text the model sees, its tags."""

    key: str
    text: str
    tags: dict[str, float]
    heldout: bool


@dataclass(frozen=True)
class Rules:
    """The selection knobs, with the seed's defaults."""

    min_positive_score: float = 8
    max_negative_score: float | None = None
    max_negative_mentions: int = 0
    max_examples_per_emotion: int = 500
    negatives_per_positive: float = 1.0
    min_examples: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.min_positive_score <= 10:
            raise UsageError(f"--min-positive-score must be in 0..10, got {self.min_positive_score}")
        if self.max_negative_score is not None and not 0 <= self.max_negative_score < self.min_positive_score:
            raise UsageError(
                f"--max-negative-score must be in 0..10 and below --min-positive-score "
                f"({self.min_positive_score}), got {self.max_negative_score}"
            )
        if self.max_negative_mentions < 0:
            raise UsageError("--max-negative-mentions must be >= 0")
        if self.max_examples_per_emotion < 1:
            raise UsageError("--max-examples-per-emotion must be >= 1")
        if not self.negatives_per_positive > 0:
            raise UsageError("--negatives-per-positive must be > 0")
        if self.min_examples < 1:
            raise UsageError("--min-examples must be >= 1")


@dataclass(frozen=True)
class Example:
    """One chosen (emotion, polarity, text) triple; ``score`` is None for an absent tag."""

    emotion: str
    polarity: Polarity
    unit: Unit
    score: float | None = field(default=None)


def _rank(*parts: object) -> int:
    """A stable pseudo-random 64-bit number for ``parts`` (same on every machine and run)."""
    digest = hashlib.sha256("\0".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def _ranker(*salt: object) -> Callable[[str], bytes]:
    """``key ->`` the 8 bytes :func:`_rank` reads as a big-endian number (so they sort the same), with the
    salt encoded once: ranking the negatives of every emotion hashes about a million keys on a large graph."""
    prefix = ("\0".join(str(p) for p in salt) + "\0").encode("utf-8")
    sha256 = hashlib.sha256

    def rank(key: str) -> bytes:
        return sha256(prefix + key.encode("utf-8")).digest()[:8]

    return rank


def normalise_whitespace(text: str) -> str:
    """The identity used for de-duplication: runs of whitespace become one space."""
    return " ".join(text.split())


def is_heldout(key: str, seed: int, fraction: float) -> bool:
    """Whether node ``key`` is held out: a hash of (seed, key) below ``fraction``.

    Per node, not per example, so a text is on the same side for every emotion.
    """
    return _rank("split", seed, key) < fraction * 2**64


def prepare_texts(
    nodes: Iterable[Node], *, min_content_chars: int, seed: int, heldout_fraction: float
) -> tuple[list[Unit], Counter[str]]:
    """Parse, filter and de-duplicate nodes; return units sorted by key and skip counts.

    Skip reasons: ``duplicate_key`` (a key seen before; the first is kept),
    ``malformed_tags``, ``too_short`` (fewer than ``min_content_chars``
    characters once tag lines are removed), ``duplicate_text`` (the same text
    as a node with a smaller key; its tags are merged into that one, highest
    score winning, so a duplicate never turns a positive into a negative).
    """
    skipped: Counter[str] = Counter()
    seen_keys: set[str] = set()
    by_text: dict[str, tuple[str, str, dict[str, float]]] = {}
    for node in nodes:
        if node.key in seen_keys:
            skipped["duplicate_key"] += 1
            continue
        seen_keys.add(node.key)
        try:
            parsed = parse_tags(node.content)
        except MalformedTags as exc:
            log.info("skipping %s: malformed tags: %s", node.key, exc)
            skipped["malformed_tags"] += 1
            continue
        if len(parsed.text) < min_content_chars:
            skipped["too_short"] += 1
            continue
        norm = normalise_whitespace(parsed.text)
        if norm in by_text:
            skipped["duplicate_text"] += 1
            key, text, tags = by_text[norm]
            merged = dict(tags)
            for name, score in parsed.tags.items():
                merged[name] = max(score, merged.get(name, score))
            if node.key < key:
                key, text = node.key, parsed.text
            by_text[norm] = (key, text, merged)
        else:
            by_text[norm] = (node.key, parsed.text, dict(parsed.tags))
    units = [
        Unit(key=key, text=text, tags=tags, heldout=is_heldout(key, seed, heldout_fraction))
        for key, text, tags in sorted(by_text.values(), key=lambda t: t[0])
    ]
    return units, skipped


def polarity(unit: Unit, emotion: str, rules: Rules, mentions: int | None = None) -> Polarity | None:
    """Positive, negative or neither (None) for ``emotion``.

    Positive: tagged with score >= ``min_positive_score``. Negative: not tagged
    (or tagged <= ``max_negative_score`` when that is set) *and* the emotion's
    name, in any spelling, occurs at most ``max_negative_mentions`` times in the
    text. Pass ``mentions`` to reuse a count already made.
    """
    score = unit.tags.get(emotion)
    if score is not None and score >= rules.min_positive_score:
        return "positive"
    if score is not None and (rules.max_negative_score is None or score > rules.max_negative_score):
        return None
    if mentions is None:
        mentions = len(mention_pattern(emotion).findall(unit.text))
    return "negative" if mentions <= rules.max_negative_mentions else None


def parse_emotion_list(text: str) -> list[str]:
    """A curated emotions file: one name per line, ``#`` starts a comment; canonical, unique, in order."""
    names: list[str] = []
    for line in text.splitlines():
        name = canonical_name(line.split("#", 1)[0])
        if name and name not in names:
            names.append(name)
    return names


class UnitIndex:
    """``units`` indexed once for every emotion's classification: tags by emotion, mentions by word.

    Classifying one emotion is then proportional to the texts tagged with it
    or naming it, not to the graph (see :mod:`.mentions`).
    """

    def __init__(self, units: Sequence[Unit], names: Iterable[str] | None = None):
        self.units = list(units)
        self.tagged: dict[str, list[tuple[int, float]]] = defaultdict(list)
        #: per side (held out or not): text length -> (position, unit), in unit order
        self.by_length: dict[bool, dict[int, list[tuple[int, Unit]]]] = {False: defaultdict(list), True: defaultdict(list)}
        for i, unit in enumerate(self.units):
            for name, score in unit.tags.items():
                self.tagged[name].append((i, score))
            self.by_length[unit.heldout][len(unit.text)].append((i, unit))
        self.side_count = {side: sum(map(len, groups.values())) for side, groups in self.by_length.items()}
        self.mentions = MentionIndex([u.text for u in self.units], self.tagged if names is None else names)

    def split(self, emotion: str, rules: Rules) -> tuple[list[int], set[int]]:
        """Positions of the positives (in unit order), and of every unit that is not a negative.

        The rules of :func:`polarity`, applied to every unit at once.
        """
        pos: list[int] = []
        not_negative: set[int] = set()
        for i, score in self.tagged.get(emotion, ()):
            if score >= rules.min_positive_score:
                pos.append(i)
                not_negative.add(i)
            elif rules.max_negative_score is None or score > rules.max_negative_score:
                not_negative.add(i)
        for i, n in self.mentions.counts(emotion, not_negative).items():
            if n > rules.max_negative_mentions:
                not_negative.add(i)
        return pos, not_negative


def choose_emotions(
    units: Sequence[Unit], rules: Rules, *, curated: Sequence[str] | None = None, top: int | None = None,
    index: UnitIndex | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The emotions to build, sorted, and the ones left out with a reason.

    An emotion is *eligible* when it has at least ``rules.min_examples``
    positives (train and held out, before the cap) and at least one negative.
    The result is the union of the eligible curated names and the ``top``
    eligible emotions with the most positives (ties by name); with neither
    given, every eligible emotion. A curated list of which no name is tagged
    anywhere is a :class:`UsageError` that lists what is present. ``index``:
    ``UnitIndex(units)`` when the caller already has it.
    """
    present = sorted({name for unit in units for name in unit.tags})
    dropped: dict[str, str] = {}
    if curated is not None:
        missing = [name for name in curated if name not in present]
        for name in missing:
            dropped[name] = "not tagged in the graph"
        if len(missing) == len(curated):
            raise UsageError(
                f"none of the {len(curated)} emotions in the emotions file is tagged in the graph; "
                f"present: {', '.join(present) or '(none)'}"
            )
    index = index if index is not None else UnitIndex(units)
    counts: dict[str, tuple[int, int]] = {}
    for name in present:
        pos, not_negative = index.split(name, rules)
        counts[name] = (len(pos), len(index.units) - len(not_negative))
    eligible = []
    for name in present:
        n_pos, n_neg = counts[name]
        if n_pos < rules.min_examples:
            dropped[name] = f"{n_pos} positives (< --min-examples {rules.min_examples})"
        elif n_neg == 0:
            dropped[name] = "no negatives"
        else:
            eligible.append(name)
    if curated is None and top is None:
        chosen = set(eligible)
    else:
        chosen = {name for name in (curated or ()) if name in eligible}
        if top is not None:
            chosen |= set(sorted(eligible, key=lambda n: (-counts[n][0], n))[:top])
    for name in present:
        if name not in chosen and name not in dropped:
            dropped[name] = "not selected (curated list / --top-emotions)"
    if not chosen:
        raise UsageError(
            f"no emotion qualifies: need >= {rules.min_examples} positives (score >= "
            f"{rules.min_positive_score}) and >= 1 negative; present: {', '.join(present) or '(none)'}"
        )
    return sorted(chosen), dict(sorted(dropped.items()))


class _Pool:
    """The negatives of one side (every unit there but ``excluded``), ordered by (text length, seeded rank).

    Of that order only the two neighbours of a target length are ever looked
    at: the lowest-ranked text of the nearest length at or above it and the
    highest-ranked one of the nearest length below. So a length's group is
    filtered and ranked the first time it is reached: on a large graph most
    groups never are, and the pool is never built as one list per emotion.
    """

    def __init__(self, by_length: dict[int, list[tuple[int, Unit]]], excluded: set[int], salt: tuple[object, ...]):
        self.by_length = by_length
        self.excluded = excluded
        self.rank = _ranker(*salt)
        self.lengths = sorted(by_length)
        self.ranked: dict[int, list[tuple[bytes, Unit]]] = {}

    def _group(self, at: int) -> list[tuple[bytes, Unit]]:
        length = self.lengths[at]
        if length not in self.ranked:
            members = [(self.rank(u.key), u) for i, u in self.by_length[length] if i not in self.excluded]
            self.ranked[length] = sorted(members, key=lambda t: t[0])
        return self.ranked[length]

    def take(self, target: int) -> Unit:
        """The negative nearest in length to ``target`` (ties: lower rank), removed from the pool."""
        while True:
            j = bisect.bisect_left(self.lengths, target)
            options = []  # (distance, rank, position in lengths, position in its group)
            if j > 0:
                below = self._group(j - 1)
                if not below:
                    self.lengths.pop(j - 1)
                    continue
                options.append((target - self.lengths[j - 1], below[-1][0], j - 1, len(below) - 1))
            if j < len(self.lengths):
                above = self._group(j)
                if not above:
                    self.lengths.pop(j)
                    continue
                options.append((self.lengths[j] - target, above[0][0], j, 0))
            _, _, at, pos = min(options)
            members = self.ranked[self.lengths[at]]
            unit = members.pop(pos)[1]
            if not members:
                self.lengths.pop(at)
            return unit


def _match_lengths(positives: Sequence[Unit], pool: _Pool, k: int) -> list[Unit]:
    """Pick ``k`` negatives from ``pool`` without replacement, each nearest in length to the next positive.

    Positives are visited round-robin in their given order; ties in length
    distance go to the lower seeded rank, so no key order leaks in.
    """
    return [pool.take(len(positives[i % len(positives)].text)) for i in range(k)]


def select_examples(units: Sequence[Unit], emotion: str, rules: Rules, index: UnitIndex | None = None) -> list[Example]:
    """The capped, balanced, length-matched examples of one emotion.

    At most ``max_examples_per_emotion`` positives are kept (a seeded sample,
    so train and held-out keep their proportions). Then, separately in train
    and in held-out, ``round(negatives_per_positive x positives)`` negatives
    (or all there are, if fewer) are matched to the positives by length.
    ``index``: ``UnitIndex(units)``, built once for all emotions by the caller.
    """
    index = index if index is not None else UnitIndex(units, [emotion])
    pos_at, not_negative = index.split(emotion, rules)
    rank = _ranker("pos", rules.seed, emotion)
    pos = sorted((index.units[i] for i in pos_at), key=lambda u: rank(u.key))[: rules.max_examples_per_emotion]
    examples = [Example(emotion, "positive", u, u.tags[emotion]) for u in pos]
    for heldout in (False, True):
        p_side = [u for u in pos if u.heldout == heldout]
        n_side = index.side_count[heldout] - sum(1 for i in not_negative if index.units[i].heldout == heldout)
        k = min(n_side, math.floor(rules.negatives_per_positive * len(p_side) + 0.5))
        if k < rules.negatives_per_positive * len(p_side) - 0.5:
            log.warning("%s: only %d %s negatives for %d positives", emotion, n_side,
                        "held-out" if heldout else "train", len(p_side))
        pool = _Pool(index.by_length[heldout], not_negative, ("neg", rules.seed, emotion))
        for u in _match_lengths(p_side, pool, k):
            examples.append(Example(emotion, "negative", u, u.tags.get(emotion)))
    return examples
