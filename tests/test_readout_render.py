"""amygdala_vllm.readout.render: calibrated z, selection, terminal views, JSON document, HTML page."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from html.parser import HTMLParser

import msgspec
import numpy as np
import pytest
from rich.console import Console

import amygdala_vllm.readout.render as render
from amygdala_vllm.errors import FormatError, UsageError
from amygdala_vllm.readout.render import (
    SCORES_FORMAT,
    build_view,
    check_concepts,
    colour_strip,
    decode_scores,
    encode_scores,
    parse_chat,
    rank_concepts,
    render_html,
    resolve_layers,
    score_table,
    to_document,
    visible_token,
    z_rgb,
)
from amygdala_vllm.readout.render._colour import NEGATIVE, NEUTRAL, POSITIVE
from amygdala_vllm.readout.render._view import z_note
from readout_fakes import CONCEPTS, LAYERS, make_manifest, make_scores

TOKENS = ["<s>", "I", " am", " so", " angry", "\n", "[bold]x[/]"]


def test_public_names_are_exported() -> None:
    assert set(render.__all__) == {n for n in dir(render) if not n.startswith("_")} - {"annotations"}


# ------------------------------------------------------------------- z scores


def test_z_uses_midpoint_and_pooled_std_of_that_concept_and_layer() -> None:
    man = make_manifest()
    scored = make_scores(TOKENS, man)
    view = build_view(scored, man, layers=[8, 20], concepts=["fear", "anger"])
    assert view.z.shape == (len(TOKENS), 2, 2) and view.raw.shape == view.z.shape
    for i, layer in enumerate([8, 20]):
        for j, concept in enumerate(["fear", "anger"]):
            cal = man.calibration[concept][str(layer)]
            mid, std = (cal.pos_mean + cal.neg_mean) / 2, cal.pooled_std
            li, ci = LAYERS.index(layer), CONCEPTS.index(concept)
            assert np.isnan(view.z[0, i, j])  # position 0 < skip_first_tokens: not scored
            np.testing.assert_allclose(view.z[1:, i, j], (scored.scores[1:, li, ci] - mid) / std, rtol=1e-6)
            for name in ("mean", "last", "max"):
                np.testing.assert_allclose(view.pooled_z[name][i, j], (scored.pooled[name][li, ci] - mid) / std,
                                           rtol=1e-6)
            assert view.pooled_raw["max"][i, j] == scored.scores[1:, li, ci].max()  # positions >= skip_first_tokens
            np.testing.assert_array_equal(view.raw[:, i, j], scored.scores[:, li, ci])
    assert view.calibrated.all()
    assert not view.token_calibrated  # a manifest without per-token means keeps the pooled calibration


def test_per_token_z_uses_the_token_calibration_and_pooled_z_the_pooled_one() -> None:
    man = make_manifest()
    for j, concept in enumerate(CONCEPTS):
        for key, cal in man.calibration[concept].items():
            man.calibration[concept][key] = msgspec.structs.replace(
                cal, token_pos_mean=cal.pos_mean + 3.0, token_neg_mean=cal.neg_mean - 1.0)
    scored = make_scores(TOKENS, man)
    view = build_view(scored, man, layers=[8], concepts=["fear"])
    cal = man.calibration["fear"]["8"]
    li, ci = LAYERS.index(8), CONCEPTS.index("fear")
    tmid, half = (cal.token_pos_mean + cal.token_neg_mean) / 2, (cal.token_pos_mean - cal.token_neg_mean) / 2
    np.testing.assert_allclose(view.z[1:, 0, 0], (scored.scores[1:, li, ci] - tmid) / half, rtol=1e-6)
    pooled_mid = (cal.pos_mean + cal.neg_mean) / 2
    want = (scored.pooled["mean"][li, ci] - pooled_mid) / cal.pooled_std
    np.testing.assert_allclose(view.pooled_z["mean"][0, 0], want, rtol=1e-6)
    assert view.token_calibrated and "half the token gap" in z_note(view)


def test_missing_or_degenerate_calibration_keeps_raw_scores_and_says_so() -> None:
    man = make_manifest(uncalibrated=(("joy", 8),))
    man.calibration["calm"]["8"].pooled_std = 0.0
    scored = make_scores(TOKENS, man)
    view = build_view(scored, man, layers=[8], concepts=["joy", "calm", "anger"])
    assert view.calibrated.tolist() == [[False, False, True]]
    np.testing.assert_array_equal(view.z[1:, 0, 0], scored.scores[1:, 1, 1])
    np.testing.assert_array_equal(view.z[1:, 0, 1], scored.scores[1:, 1, 3])
    # raw columns are coloured relative to their own peak, calibrated ones by z
    scale = view.shade_scale()
    assert scale[0, 2] == 1.0
    assert np.nanmax(np.abs(view.shade()[:, 0, 0])) == pytest.approx(render.CLIP_Z)


def test_the_first_position_is_not_scored_in_every_output() -> None:
    """Position 0 (< skip_first_tokens: left out of training and calibration) has no z, only its raw value, greyed.

    Its raw projection is made huge, as on real models (the attention sink read -1151 "z" before).
    """
    from amygdala_vllm.readout.render._colour import UNSCORED

    man = make_manifest()
    scored = make_scores(TOKENS, man)
    scored.scores[0] = -5000.0
    view = build_view(scored, man, layers=[8], concepts=["fear"])
    assert np.isnan(view.z[0]).all() and np.isfinite(view.z[1:]).all() and view.raw[0, 0, 0] == -5000.0
    # terminal: the cell says raw, on grey; no z cell is that large
    console = Console(record=True, width=120, color_system="truecolor")
    console.print(score_table(view))
    text = console.export_text(clear=False)
    row0 = next(line for line in text.splitlines() if "<s>" in line)
    assert "raw -5000" in row0 and "not scored" in text
    styled = console.export_html(inline_styles=True)
    assert "#bebebe" in styled.lower()  # UNSCORED (190, 190, 190)
    # JSON: z null, raw kept
    doc = json.loads(encode_scores(to_document(view, "text")))
    assert doc["z"][0] == [[None]] and doc["raw"][0] == [[-5000.0]] and doc["z"][1][0][0] is not None
    # HTML: the unscored span is grey, its data says null and carries the raw value for the hover text
    page = render_html(view)
    first = re.search(r'<span class="t skip"[^>]*>', page)
    assert first and "#%02x%02x%02x" % UNSCORED in first.group(0)
    data = json.loads(re.search(r'<script type="application/json" id="amygdala-data">(.*?)</script>', page, re.S).group(1))
    assert data["z"][0] == [[None]] and data["skipped_raw"] == [[[-5000.0]]] and "not scored" in page


def test_layer_choice_defaults_to_the_middle_hooked_layer() -> None:
    man = make_manifest()
    assert resolve_layers(man, None) == [8]
    assert resolve_layers(man, "all") == LAYERS
    assert resolve_layers(man, " 14 ") == [14]
    with pytest.raises(UsageError, match="layer 5 is not hooked; the manifest has layers 3, 8, 14, 20"):
        resolve_layers(man, "5")
    with pytest.raises(UsageError, match="a layer number or 'all'"):
        resolve_layers(man, "middle")


def test_unknown_concepts_are_refused_with_the_known_ones() -> None:
    man = make_manifest()
    assert check_concepts(man, ["joy", "anger", "joy"]) == ["joy", "anger"]
    with pytest.raises(UsageError, match="unknown concept 'rage'; the manifest has anger, joy"):
        check_concepts(man, ["rage"])
    with pytest.raises(UsageError, match="it was dropped: 3 train positives"):
        check_concepts(man, ["grief"])


def test_default_concepts_are_the_most_expressed_by_signed_mean_z() -> None:
    man = make_manifest()
    scored = make_scores(TOKENS * 5, man, boost={"calm": -3.0, "joy": 2.0, "awe": 1.0})
    ranked = rank_concepts(man, scored, [8])
    assert ranked[:2] == ["joy", "awe"] and ranked[-1] == "calm"  # far below its midpoint: expressed least
    view = build_view(scored, man, layers=[8], top_k=2)
    assert view.concepts == ["joy", "awe"]
    assert build_view(scored, man, layers=[8], concepts=["anger"], top_k=2).concepts == ["anger"]


def test_scores_of_the_wrong_shape_are_a_bug_not_a_picture() -> None:
    man = make_manifest()
    scored = make_scores(TOKENS, man)
    with pytest.raises(ValueError, match="scores have shape"):
        build_view(scored, man.__class__(**{**msgspec.structs.asdict(man), "concepts": CONCEPTS[:3]}), layers=[8])


# ----------------------------------------------------------------- colours


def test_colour_scale_is_diverging_and_saturates() -> None:
    assert z_rgb(0.0) == NEUTRAL and z_rgb(float("nan")) == NEUTRAL
    assert z_rgb(3.0) == POSITIVE == z_rgb(10.0) == z_rgb(float("inf"))
    assert z_rgb(-3.0) == NEGATIVE
    assert z_rgb(1.0) != z_rgb(2.0)


# ---------------------------------------------------------------- terminal


def _text(renderable: object, width: int = 140) -> str:
    console = Console(record=True, width=width, color_system="truecolor", file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_table_has_a_row_per_token_and_shows_odd_tokens_as_typed() -> None:
    man = make_manifest()
    view = build_view(make_scores(TOKENS, man), man, layers=[8], concepts=["anger", "joy"])
    out = _text(score_table(view))
    assert "[bold]x[/]" in out and "⏎" in out and "·am" in out
    assert f"{view.z[4, 0, 1]:+.2f}" in out and f"{view.pooled_z['mean'][0, 0]:+.2f}" in out
    assert f"{view.pooled_z['max'][0, 1]:+.2f}" in out
    assert "mean" in out and "last" in out and "max" in out and "anger" in out and "joy" in out


def test_table_marks_raw_columns_and_layers_when_several() -> None:
    man = make_manifest(uncalibrated=(("joy", 14),))
    view = build_view(make_scores(TOKENS, man), man, layers=[8, 14], concepts=["joy"])
    out = _text(score_table(view))
    assert "L8" in out and "L14" in out and "(raw)" in out


def test_strip_has_one_line_per_concept_with_the_whole_text() -> None:
    man = make_manifest()
    view = build_view(make_scores(TOKENS, man), man, layers=[8], concepts=["anger", "fear"])
    out = _text(colour_strip(view))
    lines = out.splitlines()
    assert any(line.startswith("anger") and "mean z" in line and "max z" in line for line in lines)
    assert any(line.startswith("fear") for line in lines)
    assert sum("<s>I am so angry⏎[bold]x[/]" in line for line in lines) == 2


def test_visible_token() -> None:
    assert visible_token(" a\tb\n") == "·a⇥b⏎"
    assert visible_token(" a", spaces=False) == " a"
    assert visible_token("") == "∅"


# -------------------------------------------------------------------- JSON


def test_json_document_round_trips_with_exact_float32_values() -> None:
    man = make_manifest()
    scored = make_scores(TOKENS, man)
    scored.scores[2, 1, 0] = np.nan
    view = build_view(scored, man, layers=[8, 14], concepts=["joy", "anger"])
    data = encode_scores(to_document(view, "I am so angry"))
    doc = decode_scores(data)
    assert doc.format == SCORES_FORMAT and doc.text == "I am so angry"
    assert doc.tokens == TOKENS and doc.token_ids == scored.token_ids
    assert doc.layers == [8, 14] and doc.concepts == ["joy", "anger"] and doc.skip_first_tokens == 1
    assert doc.raw[2][0][1] is None  # NaN -> null
    assert np.float32(doc.raw[3][0][0]) == scored.scores[3, 1, 1]
    assert np.float32(doc.z[3][1][1]) == np.float32(view.z[3, 1, 1])
    assert list(doc.pooled) == ["last", "max", "mean"]  # every mode (sorted keys in the file)
    assert np.float32(doc.pooled["mean"].z[0][0]) == np.float32(view.pooled_z["mean"][0, 0])
    assert doc.pooled["last"].raw[1][1] == float(np.float32(scored.pooled["last"][2, 0]).astype(str))
    assert np.float32(doc.pooled["max"].raw[0][1]) == scored.pooled["max"][1, 0]  # pooled before the NaN was set
    assert doc.messages is None and doc.agreement is None
    assert b"0000000" not in data  # no float64 noise


def test_json_document_is_strict() -> None:
    man = make_manifest()
    doc = json.loads(encode_scores(to_document(build_view(make_scores(TOKENS, man), man, layers=[8]), "x")))
    with pytest.raises(FormatError, match="format is 'other/1'"):
        decode_scores(json.dumps({**doc, "format": "other/1"}).encode())
    with pytest.raises(FormatError, match="unknown field"):
        decode_scores(json.dumps({**doc, "extra": 1}).encode())


def test_a_version_1_json_document_reads_as_version_2() -> None:
    """``readout --json`` output of format 1 (``mean``/``last`` fields) still decodes, keyed by mode."""
    man = make_manifest()
    doc = json.loads(encode_scores(to_document(build_view(make_scores(TOKENS, man), man, layers=[8]), "x")))
    pooled = doc.pop("pooled")
    v1 = {**doc, "format": "amygdala-readout-scores/1", "mean": pooled["mean"], "last": pooled["last"]}
    back = decode_scores(json.dumps(v1).encode())
    assert back.format == SCORES_FORMAT == "amygdala-readout-scores/2"
    assert set(back.pooled) == {"mean", "last"} and back.pooled["last"].raw == pooled["last"]["raw"]
    assert back.tokens == TOKENS and back.z == doc["z"]
    with pytest.raises(FormatError, match="unknown field"):
        decode_scores(json.dumps({**v1, "max": pooled["max"]}).encode())


def test_chat_input_parses_and_bad_chat_is_one_clear_error() -> None:
    messages = parse_chat('[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]')
    assert [(m.role, m.content) for m in messages] == [("user", "hi"), ("assistant", "hello")]
    for bad, why in [("not json", "must be a JSON list"), ('{"role": "user"}', "must be a JSON list"),
                     ('[{"role": "user"}]', "content"), ('[{"role": "u", "content": "x", "x": 1}]', "unknown field"),
                     ("[]", "holds no messages")]:
        with pytest.raises(FormatError, match=why):
            parse_chat(bad)


# -------------------------------------------------------------------- HTML


class _Spans(HTMLParser):
    """Collects the text of every token span, and each script's content."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tokens: list[str] = []
        self.scripts: list[str] = []
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        cls = dict(attrs).get("class") or ""
        if tag == "span" and "t" in cls.split():
            self._in = "span"
            self.tokens.append("")
        elif tag == "script":
            self._in = "script"
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "span":
            self.tokens[-1] += data
        elif self._in == "script":
            self.scripts[-1] += data


EVIL = ["<s>", "</script><script>alert(1)</script>", " &amp;", '"quoted"', "<|im_start|>", "\n", " 'x'", "\u2028"]


def test_html_escapes_token_text_everywhere() -> None:
    man = make_manifest()
    man.concepts[0] = "<b>anger</b>"
    man.calibration["<b>anger</b>"] = man.calibration.pop("anger")
    page = render_html(build_view(make_scores(EVIL, man), man, layers=[8]), title="t <i>")
    assert page.count("<script") == 2 and page.count("</script>") == 2
    assert "alert(1)</script>" not in page and "<b>anger" not in page and "<|im_start|>" not in page
    parser = _Spans()
    parser.feed(page)
    assert parser.tokens == EVIL
    data = json.loads(parser.scripts[0])
    assert data["tokens"] == EVIL and "<b>anger</b>" in data["concepts"]


def test_html_is_self_contained_and_painted_without_scripts() -> None:
    man = make_manifest(uncalibrated=(("joy", 20),))
    scored = make_scores(TOKENS, man, boost={"fear": 2.0})
    view = build_view(scored, man, layers=LAYERS)
    page = render_html(view)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and "url(" not in page
    spans = re.findall(r'<span class="t[^"]*" style="background:(#[0-9a-f]{6});', page)
    assert len(spans) == len(TOKENS) and len(set(spans)) > 1
    assert page.count("<option") == len(LAYERS) * len(CONCEPTS) and "joy · layer 20 (raw)" in page
    data = json.loads(re.search(r'id="amygdala-data">(.*?)</script>', page, re.S).group(1))
    assert data["concepts"][0] == "fear" and len(data["z"]) == len(TOKENS)
    assert np.asarray(data["z"]).shape == (len(TOKENS), len(LAYERS), len(CONCEPTS))


def test_render_never_imports_the_engine() -> None:
    code = ("import sys, amygdala_vllm.readout.render, amygdala_vllm.cli.readout_cmd; "
            "bad = [m for m in ('vllm', 'torch', 'transformers') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_uncalibrated_entries_do_not_outrank_calibrated_ones() -> None:
    man = make_manifest(uncalibrated=(("awe", 8),))
    scored = make_scores(TOKENS, man, boost={"joy": 1.0})
    scored.pooled["mean"][1, 4] = 1e6  # a huge raw value with no calibration behind it
    assert rank_concepts(man, scored, [8])[0] == "joy"
