"""Selection rules on small hand-built fixtures with hand-computed expectations."""

from __future__ import annotations

import logging

import pytest

from amygdala_vllm.errors import UsageError
from amygdala_vllm.pairs.nodes import Node
from amygdala_vllm.pairs.select import (
    Rules,
    Unit,
    choose_emotions,
    is_heldout,
    normalise_whitespace,
    parse_emotion_list,
    polarity,
    prepare_texts,
    select_examples,
)


def unit(key: str, length: int = 100, tags: dict[str, float] | None = None, heldout: bool = False, text: str | None = None) -> Unit:
    return Unit(key=key, text=text if text is not None else "x" * length, tags=tags or {}, heldout=heldout)


# ------------------------------------------------------------------- polarity


@pytest.mark.parametrize(
    ("tags", "text", "rules", "expected"),
    [
        ({"warmth": 9}, "a kind day", Rules(), "positive"),
        ({"warmth": 8}, "a kind day", Rules(), "positive"),  # the threshold is inclusive
        ({"warmth": 7.5}, "a kind day", Rules(), None),  # tagged, below threshold: neither
        ({"warmth": 1}, "a kind day", Rules(), None),  # default: only absent tags are negatives
        ({}, "a kind day", Rules(), "negative"),
        ({"joy": 9}, "a kind day", Rules(), "negative"),  # other emotions do not matter
        ({}, "such Warmth in the room", Rules(), None),  # named once, max mentions 0
        ({}, "such Warmth in the room", Rules(max_negative_mentions=1), "negative"),
        ({}, "warmth and more warmth", Rules(max_negative_mentions=1), None),
        ({"warmth": 3}, "a kind day", Rules(max_negative_score=3), "negative"),
        ({"warmth": 4}, "a kind day", Rules(max_negative_score=3), None),
        ({"warmth": 3}, "warmth, said once", Rules(max_negative_score=3), None),  # both conditions apply
        ({"warmth": 6}, "a kind day", Rules(min_positive_score=6), "positive"),
    ],
)
def test_polarity(tags: dict[str, float], text: str, rules: Rules, expected: str | None) -> None:
    assert polarity(unit("k", tags=tags, text=text), "warmth", rules) == expected


def test_mentions_count_spelling_variants() -> None:
    u = unit("k", text="Some self-doubt crept in.")
    assert polarity(u, "self_doubt", Rules()) is None
    assert polarity(unit("k", text="Doubting myself again."), "self_doubt", Rules()) == "negative"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_negative_score": 8},  # would overlap the positives
        {"min_positive_score": 11},
        {"max_negative_mentions": -1},
        {"max_examples_per_emotion": 0},
        {"negatives_per_positive": 0},
        {"min_examples": 0},
    ],
)
def test_rules_reject_impossible_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(UsageError):
        Rules(**kwargs)  # type: ignore[arg-type]


# -------------------------------------------------------------- prepare_texts


def test_prepare_texts_skips_and_merges() -> None:
    body40 = "a" * 40
    nodes = [
        Node("b", body40 + "\nwarmth:9"),  # exactly 40 chars after removal: kept
        Node("c", "a" * 39 + "\nwarmth:9"),  # 39 chars: too short, though content is longer
        Node("d", "Some text long enough to be kept as a node.\njoy:11"),  # malformed
        Node("b", "another node with the same key, long enough to keep"),  # duplicate key
        Node("a", "  " + body40[:20] + "\n" + body40[20:] + " \nwarmth:3 joy:8"),  # not the same text (newline)
        Node("e", "Two   spaces and\na newline, otherwise the same.\nwarmth:2"),
        Node("0", "Two spaces and a newline,  otherwise the same.\njoy:9 warmth:8"),
    ]
    units, skipped = prepare_texts(nodes, min_content_chars=40, seed=0, heldout_fraction=0.0)
    assert skipped == {"too_short": 1, "malformed_tags": 1, "duplicate_key": 1, "duplicate_text": 1}
    assert [u.key for u in units] == ["0", "a", "b"]
    merged = units[0]
    assert merged.text == "Two spaces and a newline,  otherwise the same."  # the smaller key's text
    assert merged.tags == {"joy": 9, "warmth": 8}  # max of both nodes' tags
    assert units[2].text == body40 and units[2].tags == {"warmth": 9}


def test_duplicate_text_merge_keeps_strong_tag_whatever_the_order() -> None:
    a = Node("a", "The same text, long enough to pass the filter.")
    b = Node("b", "The same text, long enough to pass the filter.\nwarmth:9")
    for order in ([a, b], [b, a]):
        units, _ = prepare_texts(order, min_content_chars=10, seed=0, heldout_fraction=0.0)
        assert [(u.key, u.tags) for u in units] == [("a", {"warmth": 9})]


def test_normalise_whitespace() -> None:
    assert normalise_whitespace(" a\n\tb  c \n") == "a b c"


# --------------------------------------------------------------------- split


def test_heldout_split_is_by_key_and_seed() -> None:
    keys = [f"journal/2026-01-{i:04d}" for i in range(2000)]
    held = [k for k in keys if is_heldout(k, 0, 0.2)]
    assert 0.17 < len(held) / len(keys) < 0.23
    assert held == [k for k in keys if is_heldout(k, 0, 0.2)]  # stable
    assert held != [k for k in keys if is_heldout(k, 1, 0.2)]  # the seed matters
    assert not any(is_heldout(k, 0, 0.0) for k in keys)
    # A larger fraction only adds nodes: the held-out set is nested.
    assert set(held) <= {k for k in keys if is_heldout(k, 0, 0.3)}


def test_prepare_texts_marks_heldout_per_node() -> None:
    nodes = [Node(f"k{i}", f"node number {i} with enough text to keep") for i in range(50)]
    units, _ = prepare_texts(nodes, min_content_chars=10, seed=3, heldout_fraction=0.5)
    assert [u.heldout for u in units] == [is_heldout(u.key, 3, 0.5) for u in units]


# ----------------------------------------------------------- select_examples


def _keys(examples, polarity_: str) -> set[str]:  # type: ignore[no-untyped-def]
    return {e.unit.key for e in examples if e.polarity == polarity_}


def test_negatives_are_matched_to_positive_lengths() -> None:
    units = [
        unit("p100", 100, {"joy": 9}),
        unit("p300", 300, {"joy": 9}),
        *(unit(f"n{n}", n) for n in (95, 120, 290, 500, 1000)),
    ]
    ex = select_examples(units, "joy", Rules())
    assert _keys(ex, "positive") == {"p100", "p300"}
    assert _keys(ex, "negative") == {"n95", "n290"}


def test_two_negatives_per_positive_nearest_without_replacement() -> None:
    units = [
        unit("p100", 100, {"joy": 9}),
        unit("p300", 300, {"joy": 9}),
        *(unit(f"n{n}", n) for n in (95, 120, 290, 500, 1000)),
    ]
    ex = select_examples(units, "joy", Rules(negatives_per_positive=2))
    # Whichever positive goes first: 95 and 290 are taken, then 120 and 500; 1000 never is.
    assert _keys(ex, "negative") == {"n95", "n120", "n290", "n500"}


def test_same_length_positives_take_distinct_negatives() -> None:
    units = [unit("p1", 100, {"joy": 9}), unit("p2", 100, {"joy": 9}), unit("n100", 100), unit("n105", 105), unit("n400", 400)]
    assert _keys(select_examples(units, "joy", Rules()), "negative") == {"n100", "n105"}


def test_balance_is_per_split() -> None:
    units = [
        *(unit(f"pt{i}", 100 + i, {"calm": 9}) for i in range(3)),
        unit("ph0", 100, {"calm": 10}, heldout=True),
        *(unit(f"nt{i}", 100 + i) for i in range(5)),
        *(unit(f"nh{i}", 100 + i, heldout=True) for i in range(4)),
    ]
    ex = select_examples(units, "calm", Rules())
    by = {(e.polarity, e.unit.heldout): 0 for e in ex}
    for e in ex:
        by[(e.polarity, e.unit.heldout)] += 1
    assert by == {("positive", False): 3, ("positive", True): 1, ("negative", False): 3, ("negative", True): 1}
    # No held-out text is ever used as a train example and vice versa.
    assert all(e.unit.heldout == e.unit.key.startswith(("ph", "nh")) for e in ex)


def test_fewer_negatives_than_wanted_takes_all_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    units = [*(unit(f"p{i}", 100, {"calm": 9}) for i in range(4)), unit("n0", 50)]
    with caplog.at_level(logging.WARNING):
        ex = select_examples(units, "calm", Rules())
    assert _keys(ex, "negative") == {"n0"}
    assert "only 1 train negatives for 4 positives" in caplog.text


def test_cap_is_a_seeded_deterministic_sample() -> None:
    units = [unit(f"p{i:02d}", 100, {"joy": 9}) for i in range(20)] + [unit(f"n{i:02d}", 100) for i in range(30)]
    rules = Rules(max_examples_per_emotion=5)
    first = select_examples(units, "joy", rules)
    assert len(_keys(first, "positive")) == 5 and len(_keys(first, "negative")) == 5
    assert first == select_examples(list(reversed(units)), "joy", rules)  # input order does not matter
    other = select_examples(units, "joy", Rules(max_examples_per_emotion=5, seed=1))
    assert _keys(first, "positive") != _keys(other, "positive")
    assert _keys(first, "positive") != {f"p{i:02d}" for i in range(5)}  # not simply the first keys


def test_scores_recorded_for_examples() -> None:
    units = [unit("p", 100, {"joy": 9.5}), unit("low", 100, {"joy": 2}), unit("none", 100)]
    ex = select_examples(units, "joy", Rules(max_negative_score=2, negatives_per_positive=2))
    assert {(e.unit.key, e.polarity, e.score) for e in ex} == {("p", "positive", 9.5), ("low", "negative", 2), ("none", "negative", None)}


# ----------------------------------------------------------- choose_emotions


def _graph() -> list[Unit]:
    """joy: 3 positives; calm: 2; pride: 1; awe: tagged only weakly; hope: on every node (no negatives)."""
    return [
        unit("a", tags={"joy": 9, "calm": 9, "hope": 9}),
        unit("b", tags={"joy": 8, "calm": 8, "hope": 9}),
        unit("c", tags={"joy": 10, "pride": 9, "hope": 9}),
        unit("d", tags={"awe": 3, "hope": 9}),
        unit("e", tags={"hope": 1}),
    ]


def test_default_keeps_every_eligible_emotion() -> None:
    chosen, dropped = choose_emotions(_graph(), Rules())
    assert chosen == ["calm", "joy", "pride"]
    assert dropped == {"awe": "0 positives (< --min-examples 1)", "hope": "no negatives"}


def test_min_examples_and_top() -> None:
    assert choose_emotions(_graph(), Rules(min_examples=2))[0] == ["calm", "joy"]
    assert choose_emotions(_graph(), Rules(), top=1)[0] == ["joy"]
    assert choose_emotions(_graph(), Rules(), top=2)[0] == ["calm", "joy"]


def test_curated_and_top_are_a_union() -> None:
    chosen, dropped = choose_emotions(_graph(), Rules(), curated=["pride", "wonder"], top=1)
    assert chosen == ["joy", "pride"]
    assert dropped["wonder"] == "not tagged in the graph"
    assert dropped["calm"].startswith("not selected")


def test_curated_alone_and_curated_below_min_examples() -> None:
    assert choose_emotions(_graph(), Rules(), curated=["calm"])[0] == ["calm"]
    with pytest.raises(UsageError, match="no emotion qualifies"):
        choose_emotions(_graph(), Rules(min_examples=2), curated=["pride"])


def test_curated_naming_nothing_present_lists_what_is() -> None:
    with pytest.raises(UsageError, match="present: awe, calm, hope, joy, pride"):
        choose_emotions(_graph(), Rules(), curated=["wonder", "dread"])


def test_parse_emotion_list() -> None:
    text = "# curated\nWarmth\n\nself-doubt  # the inner critic\nwarmth\n   \nSelf Doubt\njoy\n"
    assert parse_emotion_list(text) == ["warmth", "self_doubt", "joy"]
