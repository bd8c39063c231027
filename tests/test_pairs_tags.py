"""Tag lines: what counts, what is stripped, how names are spelled, what is malformed."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from amygdala_vllm.pairs.tags import (
    MalformedTags,
    canonical_name,
    format_tag_line,
    mention_pattern,
    parse_tags,
)


def test_single_trailing_line_is_parsed_and_removed() -> None:
    parsed = parse_tags("A long day at the harbour.\nwarmth:9 clarity:10")
    assert parsed.text == "A long day at the harbour."
    assert parsed.tags == {"warmth": 9, "clarity": 10}


def test_several_trailing_lines_merge_with_blank_lines_between() -> None:
    parsed = parse_tags("Body.\n\nwarmth:9\n\nclarity:7 joy:2\n\n")
    assert parsed.text == "Body."
    assert parsed.tags == {"warmth": 9, "clarity": 7, "joy": 2}


def test_duplicate_names_take_the_highest_score_in_any_order() -> None:
    assert parse_tags("Body.\nwarmth:9\nwarmth:3").tags == {"warmth": 9}
    assert parse_tags("Body.\nwarmth:3\nWarmth:9").tags == {"warmth": 9}
    assert parse_tags("Body.\nwarmth:3 warmth:4").tags == {"warmth": 4}


def test_decimal_scores_and_bounds() -> None:
    assert parse_tags("Body.\ncalm:7.5 joy:0 pride:10 love:10.0").tags == {"calm": 7.5, "joy": 0, "pride": 10, "love": 10}


def test_integral_scores_are_ints() -> None:
    tags = parse_tags("Body.\nlove:10.0 joy:8").tags
    assert type(tags["love"]) is int and type(tags["joy"]) is int


@pytest.mark.parametrize("spelling", ["Self-Doubt", "self_doubt", "SELF-doubt", "self doubt", "Self__Doubt", "self - doubt"])
def test_name_variants_share_one_canonical_form(spelling: str) -> None:
    assert canonical_name(spelling) == "self_doubt"


def test_multi_word_name_in_a_tag_line() -> None:
    parsed = parse_tags("I kept rereading the draft.\nwarmth:2 self doubt:7, Self-Doubt:8")
    assert parsed.tags == {"warmth": 2, "self_doubt": 8}
    assert parsed.text == "I kept rereading the draft."


def test_too_many_words_before_a_colon_is_prose_not_a_tag() -> None:
    content = "Body.\nand then I finally said:7"
    assert parse_tags(content).tags == {}
    assert parse_tags(content).text == content


def test_tag_like_text_inside_the_body_is_kept() -> None:
    content = "warmth:9\nThen the day went on and nothing much happened.\njoy:8"
    parsed = parse_tags(content)
    assert parsed.text == "warmth:9\nThen the day went on and nothing much happened."
    assert parsed.tags == {"joy": 8}


def test_prose_lines_are_not_tags() -> None:
    for tail in ["Mood: good", "Meeting at 10:30 tomorrow", "see https://example.org/x", "ratio 3:2"]:
        parsed = parse_tags("Body.\n" + tail)
        assert parsed.tags == {}, tail
        assert parsed.text.endswith(tail)


@pytest.mark.parametrize("bad", ["joy:11", "warmth:high", "calm:9/10", "love:-2", "pride:10.5", "joy:9 warmth:high"])
def test_malformed_trailing_line_raises(bad: str) -> None:
    with pytest.raises(MalformedTags):
        parse_tags("Body of the node.\n" + bad)


def test_malformed_line_anywhere_in_the_trailing_block_raises() -> None:
    with pytest.raises(MalformedTags):
        parse_tags("Body.\njoy:11\nwarmth:9")


def test_only_tags_gives_empty_text() -> None:
    assert parse_tags("warmth:9\njoy:3").text == ""


def test_crlf_line_endings() -> None:
    parsed = parse_tags("Line one.\r\nLine two.\r\nwarmth:9\r\n")
    assert parsed.text == "Line one.\r\nLine two."
    assert parsed.tags == {"warmth": 9}


def test_mention_pattern_matches_spelling_variants_as_whole_words() -> None:
    p = mention_pattern("self_doubt")
    assert len(p.findall("Self-doubt, self doubt, self_doubt, selfdoubt.")) == 4
    assert p.findall("myself doubting") == []
    assert mention_pattern("joy").findall("enjoy the Joy, joyful; joy!") == ["Joy", "joy"]


# ------------------------------------------------------------------ property

_name_word = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
_names = st.builds(lambda ws, sep: sep.join(ws), st.lists(_name_word, min_size=1, max_size=3), st.sampled_from(["_", "-", " "]))
_scores = st.one_of(st.integers(0, 10), st.integers(0, 99).map(lambda n: n / 10))
_tags = st.dictionaries(_names, _scores, min_size=1, max_size=6)


def _spell(name: str, score: float) -> str:
    text = str(int(score)) if float(score).is_integer() else str(score)
    return f"{name}:{text}"


@settings(max_examples=150, deadline=None)
@given(
    body=st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=300),
    groups=st.lists(_tags, min_size=1, max_size=3),
    sep=st.sampled_from(["\n", "\n\n", "\n \n"]),
)
def test_any_body_plus_any_tag_lines_round_trips(body: str, groups: list[dict[str, float]], sep: str) -> None:
    body = body.strip()
    assume(body)
    # The body's own last line must not itself be a tag line (then it would not be body).
    try:
        assume(parse_tags(body).text == body)
    except MalformedTags:
        assume(False)
    lines = [" ".join(_spell(n, s) for n, s in group.items()) for group in groups]
    parsed = parse_tags(body + sep + "\n".join(lines) + "\n")
    expected: dict[str, float] = {}
    for group in groups:
        for name, score in group.items():
            key = canonical_name(name)
            expected[key] = max(score, expected.get(key, score))
    assert parsed.text == body
    assert parsed.tags == expected


@given(_tags)
def test_format_tag_line_parses_back(tags: dict[str, float]) -> None:
    canonical: dict[str, float] = {}
    for name, score in tags.items():
        canonical[canonical_name(name)] = max(score, canonical.get(canonical_name(name), score))
    assert parse_tags("Body.\n" + format_tag_line(canonical)).tags == canonical
