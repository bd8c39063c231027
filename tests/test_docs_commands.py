"""The README and docs show only commands, flags and defaults the CLI has, and paths and links that exist.

Parsed through the click command typer builds (see ``tests/doc_commands.py``);
nothing runs and no engine starts, so the whole check takes about a second.
"""

from __future__ import annotations

import pytest

from doc_commands import PENDING_DOCS, ROOT, check_text, doc_files, shown_commands, vllm_installed

DOCS = doc_files()


@pytest.mark.parametrize("doc", DOCS, ids=[p.relative_to(ROOT).as_posix() for p in DOCS])
def test_every_command_flag_path_and_link_a_doc_shows_exists(doc):
    name = doc.relative_to(ROOT).as_posix()
    problems = check_text(name, doc.read_text(encoding="utf-8"))
    assert not problems, "docs drifted from the CLI:\n" + "\n".join(map(str, problems))


def test_the_readme_shows_every_command():
    """The README's command table names each command, so the check above covers them all."""
    shown = shown_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert shown == {"pairs", "extract", "reduce", "validate", "readout", "serve", "model"}


PLANTED = """\
# `amygdala-vllm reduce`: planted

```bash
amygdala-vllm reduce --activations runs/activations \\
  --pooling mean --no-such-flag 3     # a comment --not-checked
amygdala-vllm nosuch --x
echo hi | amygdala-vllm readout - --vectors V | jq .
amygdala-vllm serve MODEL --vectors V --port 8000 --not-a-vllm-flag
```

Inline: `amygdala-vllm readout [TEXT | --file F] [--layer N|all] [--colour]` and `extract --ray --rey`.

## Flags

| flag | default | meaning |
|---|---|---|
| `--method caa`, `--bogus-row` | auto | x |
| `--top-pairs N`, `--force` | 7, off | x |

See [the guide](docs/nowhere.md), docs/missing.md and `scripts/no_such_script.sh`.
And [a lost heading](README.md#no-such-heading), [this one](#flags), [and not this](#nope).

```bash
MODEL=smollm2; amygdala-vllm extract --model "$MODEL" --output-dir <dir> && amygdala-vllm reduce --force
.venv/bin/python scripts/bench.py --quick --serve-only   # a script's own flags
.venv/bin/python scripts/bench.py --quik
amygdala-vllm reduce --pooling mean|last --method caa,lda,ica
```
"""


def test_the_check_names_the_doc_line_and_unknown_flag():
    """A planted bad doc: every kind of drift is caught and named; the good parts pass.

    Good parts that must not be reported: a ``\\`` continuation, a trailing ``#`` comment, a pipe into
    and out of a command, ``serve`` passing ``--port`` to vLLM, ``[...]`` and ``a|b`` placeholders, ``$VARS``, ``&&``, a
    table row whose default (``auto``, ``off``) is the command's.
    """
    problems = [str(p) for p in check_text("planted.md", PLANTED, root=ROOT)]
    expected = [
        "planted.md:4: `amygdala-vllm reduce` has no flag --no-such-flag",
        "planted.md:6: `amygdala-vllm nosuch`: no such command",
        "planted.md:11: `amygdala-vllm readout` has no flag --colour",
        "planted.md:11: `amygdala-vllm extract` has no flag --rey",
        "planted.md:17: flag table of `amygdala-vllm reduce` shows --bogus-row",
        "planted.md:18: flag table of `amygdala-vllm reduce` shows --top-pairs defaulting to 7; the command's default is 5",
        "planted.md:20: link to docs/nowhere.md does not resolve",
        "planted.md:20: link to docs/missing.md does not resolve",
        "planted.md:20: scripts/no_such_script.sh does not exist",
        "planted.md:21: link to README.md#no-such-heading: README.md has no heading #no-such-heading",
        "planted.md:21: link to #nope: planted.md has no such heading",
        "planted.md:26: scripts/bench.py has no flag --quik",
        "planted.md:27: --pooling mean|last lists the choices but leaves out max",
        "planted.md:27: --method ica: not a registered value",
    ]
    if vllm_installed():  # serve's pass-through flags are checked against vLLM's own argument fields
        expected.append("planted.md:8: `amygdala-vllm serve` has no flag --not-a-vllm-flag")
    for start in expected:
        assert any(p.startswith(start) for p in problems), f"not caught: {start}\ngot: {problems}"
    assert len(problems) == len(expected), problems


def test_pending_docs_are_only_those_another_branch_adds():
    """The allow-list of dangling links holds only docs that do not exist yet; emptied at merge."""
    for path in PENDING_DOCS:
        assert not (ROOT / path).exists(), f"{path} exists now: drop it from PENDING_DOCS"
