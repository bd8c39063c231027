"""validate/ood: the out-of-distribution texts file, plain or JSONL, with errors naming the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from amygdala_vllm.validate.ood import read_ood_texts


def test_read_ood_texts(tmp_path: Path) -> None:
    plain = tmp_path / "o.txt"
    plain.write_text("first text\n\nsecond text\n")
    assert read_ood_texts(plain) == ["first text", "second text"]
    jl = tmp_path / "o.jsonl"
    jl.write_text('{"text": "a"}\n{"text": "b", "meta": 1}\n')
    assert read_ood_texts(jl) == ["a", "b"]
    jl.write_text('{"text": "a"}\n{"body": "b"}\n')
    with pytest.raises(Exception, match=r"o.jsonl:2: expected an object"):
        read_ood_texts(jl)
