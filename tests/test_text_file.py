"""text_file: plain or JSONL text files, blank lines skipped, errors naming ``file:line``."""

from __future__ import annotations

import pytest

from amygdala_vllm.errors import FormatError
from amygdala_vllm.text_file import read_text_lines


def test_plain_lines_keep_their_line_numbers(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("first\n\n  \nsecond {not json}\n")
    assert read_text_lines(p, "texts file") == [(1, "first"), (4, "second {not json}")]


def test_jsonl_when_the_first_text_is_an_object(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('\n{"text": "a", "id": 7}\n\n{"text": "b"}\n')
    assert read_text_lines(p, "texts file") == [(2, "a"), (4, "b")]


@pytest.mark.parametrize("content, message", [
    ('{"text": "a"}\n{"text": 3}\n', r"t.txt:2: expected an object with a \"text\" string"),
    ('{"text": "a"}\n{oops\n', r"t.txt:2: not valid JSON"),
    ("\n  \n", r"--ood .*t.txt holds no text"),
])
def test_bad_files_are_one_format_error(tmp_path, content, message):
    p = tmp_path / "t.txt"
    p.write_text(content)
    with pytest.raises(FormatError, match=message):
        read_text_lines(p, "--ood")


def test_missing_and_undecodable_files(tmp_path):
    with pytest.raises(FormatError, match=r"--neutral-texts .*nope.txt does not exist"):
        read_text_lines(tmp_path / "nope.txt", "--neutral-texts")
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(b"caf\xe9\n")
    with pytest.raises(FormatError, match=r"is not UTF-8 \(byte 3\)"):
        read_text_lines(bad, "--ood")
