"""Reading tool results: text blocks, structured content and JSON text, best candidate first."""

from __future__ import annotations

from amygdala_vllm.pairs.mcp.results import result_json, result_text


def test_result_json_candidates() -> None:
    text = {"type": "text", "text": '{"a": 1}'}
    assert result_json({"structuredContent": {"result": [1]}, "content": [text]}) == [{"result": [1]}, [1], {"a": 1}]
    per_item = [{"type": "text", "text": '{"k": 1}'}, {"type": "text", "text": '{"k": 2}'}]
    assert result_json({"content": per_item}) == [[{"k": 1}, {"k": 2}]]
    assert result_json({"content": [{"type": "text", "text": "plain words"}]}) == []


def test_result_text_joins_text_blocks_only() -> None:
    blocks = [{"type": "text", "text": "a"}, {"type": "image", "data": "..."}, {"type": "text", "text": "b"}]
    assert result_text({"content": blocks}) == "a\nb"
    assert result_text({}) == "" and result_text({"content": "x"}) == ""
