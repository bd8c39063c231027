"""Files of texts given on the command line: JSONL objects with ``text``, or one text per line.

``validate --ood FILE`` and ``pairs --neutral-texts FILE`` both take such a
file; one reader keeps their layout rules and errors the same. A file whose
first non-blank line starts with ``{`` is JSONL and every non-blank line must
then be an object with a string ``text`` (other fields ignored); anything else
is plain text, one text per line. Blank lines are skipped; a file with no text
is an error. Errors name ``file:line``.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from .errors import FormatError

__all__ = ["read_text_lines"]


def read_text_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """``(line number, text)`` for each non-blank line of ``path``; ``what`` names the file in errors."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as exc:
        raise FormatError(f"{what} {path} does not exist") from exc
    except UnicodeDecodeError as exc:
        raise FormatError(f"{what} {path} is not UTF-8 (byte {exc.start})") from exc
    except OSError as exc:
        raise FormatError(f"cannot read {what} {path}: {exc}") from exc
    numbered = [(i, ln) for i, ln in enumerate(lines, 1) if ln.strip()]
    if not numbered:
        raise FormatError(f"{what} {path} holds no text")
    if not numbered[0][1].lstrip().startswith("{"):
        return numbered
    texts = []
    for i, ln in numbered:
        try:
            obj = msgspec.json.decode(ln)
        except msgspec.DecodeError as exc:
            raise FormatError(f"{path}:{i}: not valid JSON: {exc}") from exc
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise FormatError(f"{path}:{i}: expected an object with a \"text\" string")
        texts.append((i, obj["text"]))
    return texts
