"""Find every ``amygdala-vllm`` command line, flag-table row and path a doc shows, and check it.

The README and ``docs/*.md`` show commands in code blocks (with ``\\`` line
continuations, ``$VARS``, ``...``), in inline code (``amygdala-vllm readout
[TEXT | --file F] [--layer N|all]``, ``reduce --pooling max``) and in flag tables
(``| `--flag VALUE` | default | meaning |`` under a heading that names the
command). Each is checked against the click command typer builds from
``amygdala_vllm.cli.app``: the command must exist and every flag it uses must be
one of its options; a flag table's ``default`` column, where it shows literal
values (``16``, ```auto```, ``off``), must be the option's default; and the
values shown for a registry-backed flag (``--pooling``, ``--method``) must be
registered, all of them where a doc lists the choices as ``a|b|c``. Nothing runs: no command body, no vLLM engine. Placeholders
(``FILE``, ``<path>``, ``a|b`` alternatives, ``[optional]`` groups) are values,
not flags, so they need no special meaning beyond being skipped.

A code block's ``scripts/NAME.py --flag`` must name a flag spelled in that
script (or its ``scripts/NAME/`` package); ``scripts/...`` paths must exist and
relative links (with their ``#anchors``) must resolve, except to the docs in
:data:`PENDING_DOCS`.

``serve`` passes every flag it does not know to ``vllm serve``; such a flag must
then be a field of vLLM's engine or server arguments, read from the installed
vLLM's source text (no import, so the check stays fast).

The helpers live here, not in the test file, so that the test can feed them a
planted bad document and prove the check fails.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = "amygdala-vllm"

#: Doc files another branch adds; a link to one of them may dangle until the lead merges it.
#: The lead empties this tuple at merge time (issue 23), after which every link must resolve.
PENDING_DOCS: tuple[str, ...] = (
)

#: Docs whose flag tables belong to a command their headings do not name.
DOC_COMMANDS = {"mcp.md": ("pairs",), "extract.md": ("extract",)}

_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE = re.compile(r"`([^`]+)`")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_FLAG = re.compile(r"^--?[A-Za-z][\w-]*$")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_SCRIPT = re.compile(r"(?<![\w/.-])scripts/[\w./-]*[\w]")
_DOC_MENTION = re.compile(r"(?<![\w/.-])docs/[\w.-]+\.md")


@dataclass(frozen=True)
class Problem:
    """One thing a doc shows that the code does not have."""

    doc: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.message}"


@cache
def cli_group() -> typer.core.TyperGroup:
    """The click group typer builds from the app: the same object ``amygdala-vllm`` parses with."""
    from amygdala_vllm.cli import app

    return typer.main.get_command(app)  # type: ignore[return-value]


def command_names() -> tuple[str, ...]:
    """The top-level commands (pairs, extract, ..., model)."""
    return tuple(cli_group().commands)


def _passes_through(cmd: object) -> bool:
    """Whether the command hands flags it does not know on (``serve`` -> ``vllm serve``)."""
    settings = getattr(cmd, "context_settings", None) or {}
    return bool(settings.get("ignore_unknown_options") or getattr(cmd, "ignore_unknown_options", False))


def _options(cmd: object) -> set[str]:
    """Every option string a click command accepts (``--compile`` and ``--eager`` both)."""
    names: set[str] = {"--help", "-h"}
    for param in getattr(cmd, "params", []):
        if type(param).__name__.endswith("Option"):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


@cache
def _vllm_sources() -> str | None:
    """The text of vLLM's engine and server argument modules, or None without vLLM installed."""
    spec = importlib.util.find_spec("vllm")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(next(iter(spec.submodule_search_locations)))
    files = [base / "engine" / "arg_utils.py", *sorted((base / "entrypoints").rglob("cli_args.py"))]
    return "\n".join(f.read_text(encoding="utf-8") for f in files if f.is_file())


def vllm_installed() -> bool:
    """Whether vLLM's argument sources are here to check ``serve``'s pass-through flags against."""
    return _vllm_sources() is not None


def is_vllm_flag(flag: str) -> bool:
    """Whether ``vllm serve`` takes ``flag`` (a field of its engine or server argument classes)."""
    source = _vllm_sources()
    if source is None:
        return True  # no vLLM here: the pass-through flags cannot be checked, so they are not
    field = flag.lstrip("-").replace("-", "_")
    return re.search(rf"^\s+{re.escape(field)}\s*:", source, re.M) is not None


def _split_shell(text: str) -> list[str]:
    """Cut a shell line at pipes, ``&&``, ``;`` and comments outside quotes and ``[...]`` groups.

    ``[TEXT | --file F]`` is a synopsis alternative, not a pipe, so brackets guard it.
    """
    parts, current, depth, quote = [], [], 0, ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth = max(0, depth - 1)
        elif depth == 0 and (text.startswith("&&", i) or text.startswith("||", i) or ch in ";|"):
            if ch == "|" and not (i > 0 and text[i - 1].isspace()) and not text.startswith("||", i):
                current.append(ch)  # a|b without spaces is a list of alternatives
                i += 1
                continue
            parts.append("".join(current))
            current = []
            i += 2 if text.startswith(("&&", "||"), i) else 1
            continue
        elif ch == "#" and (i == 0 or text[i - 1].isspace()):
            break
        current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def _tokens(text: str) -> list[str]:
    """Shell words of ``text``, placeholders and brackets stripped (values, never flags)."""
    text = re.sub(r"<[A-Za-z][^<>]*>", "X", text)
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    out: list[str] = []
    for word in words:
        word = word.strip("[](){}.,;:")
        for piece in word.split("|"):
            if piece.startswith("--") and "=" in piece:
                piece = piece.split("=", 1)[0]
            out.extend(p for p in (piece.split("/") if re.match(r"^--[\w-]+/--", piece) else [piece]) if p)
    return out


def check_command(doc: str, line: int, words: list[str], *, prefixed: bool = True) -> list[Problem]:
    """Check one command: ``words`` follow ``amygdala-vllm`` (the command, then its arguments)."""
    group = cli_group()
    cmd: object = group
    path: list[str] = []
    rest = list(words)
    while rest and hasattr(cmd, "commands") and not _FLAG.match(rest[0]):
        name = rest[0]
        sub = cmd.commands.get(name)  # type: ignore[attr-defined]
        if sub is None:
            shown = " ".join([PROGRAM, *path, name])
            return [Problem(doc, line, f"`{shown}`: no such command (commands: {', '.join(cmd.commands)})")]  # type: ignore[attr-defined]
        path.append(name)
        cmd = sub
        rest.pop(0)
    if not path and not prefixed:
        return []
    known = _options(cmd)
    passes_through = _passes_through(cmd)
    problems = []
    for word in rest:
        if not _FLAG.match(word) or word in known:
            continue
        if passes_through and is_vllm_flag(word):
            continue
        where = " ".join([PROGRAM, *path])
        extra = " (and vLLM's server takes no such flag either)" if passes_through else ""
        problems.append(Problem(doc, line, f"`{where}` has no flag {word}{extra}"))
    return problems


def _lines_with_fences(text: str) -> Iterator[tuple[int, str, bool]]:
    """(1-based line number, line, inside a fenced code block)."""
    inside = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            inside = not inside
            yield number, line, True
            continue
        yield number, line, inside


def _code_segments(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line, shell words) for each command of the code blocks, continuations joined, pipes and ``&&`` cut."""
    logical, start = "", 0
    for number, line, in_code in _lines_with_fences(text):
        if not in_code or _FENCE.match(line):
            continue
        if not logical:
            start = number
        if line.rstrip().endswith("\\"):
            logical += line.rstrip()[:-1] + " "
            continue
        logical += line
        for part in _split_shell(logical):
            yield start, _tokens(part)
        logical = ""


def _code_commands(text: str) -> Iterator[tuple[int, str]]:
    """(line, text after ``amygdala-vllm``) for each command in the code blocks."""
    for start, words in _code_segments(text):
        for i, word in enumerate(words):
            if word == PROGRAM or word.endswith("/" + PROGRAM) or (word == "amygdala_vllm" and i and words[i - 1] == "-m"):
                yield start, " ".join(shlex.quote(w) for w in words[i + 1:])
                break


def _script_flags(doc: str, text: str, root: Path) -> Iterator[Problem]:
    """Flags shown after ``scripts/NAME.py`` in a code block must be spelled in that script (or ``scripts/NAME/``)."""
    for line, words in _code_segments(text):
        at = next((i for i, w in enumerate(words) if re.fullmatch(r"(.*/)?scripts/[\w-]+\.py", w)), None)
        if at is None:
            continue
        script = root / words[at][words[at].index("scripts/"):]
        if not script.is_file():
            continue  # reported by _paths
        sources = [script, *sorted(script.with_suffix("").glob("*.py"))]
        # A thin script whose command line lives in the package: the modules it imports count too.
        for module in re.findall(r"^from (amygdala_vllm[\w.]*) import", script.read_text(encoding="utf-8"), re.M):
            module_file = (root / module.replace(".", "/")).with_suffix(".py")
            if module_file.is_file():
                sources.append(module_file)
        source = "\n".join(f.read_text(encoding="utf-8") for f in sources)
        for flag in (w for w in words[at + 1:] if _FLAG.match(w) and w.startswith("--")):
            if f'"{flag}"' not in source and f"'{flag}'" not in source:
                yield Problem(doc, line, f"{script.relative_to(root).as_posix()} has no flag {flag}")


def _prose(text: str) -> str:
    """The doc with its code blocks blanked (line numbers kept), ``\\|`` table escapes undone."""
    return "\n".join("" if in_code else line.replace("\\|", "|") for _, line, in_code in _lines_with_fences(text))


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _inline_commands(prose: str, commands: tuple[str, ...]) -> Iterator[tuple[int, list[str], bool]]:
    """Inline code that shows a command: ``amygdala-vllm ...`` or ``<command> --flag ...``."""
    for match in _INLINE.finditer(prose):
        span = " ".join(match.group(1).split())
        for part in _split_shell(span):
            words = _tokens(part)
            if words and words[0] == PROGRAM:
                yield _line_of(prose, match.start()), words[1:], True
            elif words and words[0] in commands and any(_FLAG.match(w) for w in words[1:]):
                yield _line_of(prose, match.start()), words, False


def _section_commands(doc: str, prose: str, commands: tuple[str, ...]) -> dict[int, tuple[str, ...]]:
    """For each line, the commands its nearest heading (or a parent heading) names."""
    stack: list[tuple[int, tuple[str, ...]]] = []
    result: dict[int, tuple[str, ...]] = {}
    fallback = DOC_COMMANDS.get(Path(doc).name) or ((Path(doc).stem,) if Path(doc).stem in commands else ())
    for number, line in enumerate(prose.splitlines(), start=1):
        heading = _HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            named = tuple(
                c for c in commands
                if any(re.search(rf"(^|\s){c}(\s|$)", code) for code in _INLINE.findall(heading.group(2)))
            )
            stack = [s for s in stack if s[0] < level] + [(level, named)]
        named_here = next((n for _, n in reversed(stack) if n), fallback)
        result[number] = named_here
    return result


def _cells(row: str) -> list[str]:
    """A table row's cells; a ``|`` inside inline code (``--x a|b``) does not end one."""
    body = row.strip()[1:]
    body = body[:-1] if body.endswith("|") else body
    cells, cell, in_code = [], [], False
    for ch in body:
        if ch == "`":
            in_code = not in_code
        elif ch == "|" and not in_code:
            cells.append("".join(cell).strip())
            cell = []
            continue
        cell.append(ch)
    cells.append("".join(cell).strip())
    return cells


def _shown_values(cell: str) -> list[str] | None:
    """The literal defaults a table cell shows (```1`, `2``, ``16, 256``, ```0` (off)``), or None for prose."""
    spans = _INLINE.findall(cell)
    if spans and cell.startswith("`"):
        rest = re.sub(r"`[^`]*`", "", cell)
        if re.fullmatch(r"[\s,]*", rest):
            return [s.strip() for s in spans]
        return [spans[0].strip()] if len(spans) == 1 and rest.lstrip().startswith("(") else None
    parts = [p.strip() for p in cell.split(",")]
    return parts if all(re.fullmatch(r"[\w./-]+", p) for p in parts) else None


def _default_matches(param: object, shown: str) -> bool | None:
    """Whether ``shown`` is ``param``'s default; None when a table's words cannot be compared."""
    default = getattr(param, "default", None)
    if isinstance(default, (list, tuple)):
        default = ",".join(map(str, default)) if default else None
    numeric = re.fullmatch(r"-?\d+(\.\d+)?", shown) is not None
    if isinstance(default, bool):
        on = {o.lstrip("-") for o in param.opts} | {"on"}  # type: ignore[attr-defined]
        off = {o.lstrip("-") for o in param.secondary_opts} | {"off"}  # type: ignore[attr-defined]
        return default if shown in on else (not default) if shown in off else None
    if default is None:
        return False if numeric else None
    if isinstance(default, (int, float)):
        return float(shown) == float(default) if numeric else None
    return shown == str(default)


def _table_rows(doc: str, prose: str, commands: tuple[str, ...]) -> Iterator[Problem]:
    """Check the flags in the first cell of every flag-table row, and the defaults the row shows."""
    owners = _section_commands(doc, prose, commands)
    group = cli_group()
    lines = prose.splitlines()
    header: list[str] | None = None
    for number, line in enumerate(lines, start=1):
        if not line.lstrip().startswith("|"):
            header = None
            continue
        if re.fullmatch(r"\s*\|[\s:|-]+", line):
            header = [c.lower() for c in _cells(lines[number - 2])] if number > 1 else None
            continue
        cells = _cells(line)
        codes = [code for code in _INLINE.findall(cells[0]) if code.lstrip().startswith("-")]
        flags = [w for code in codes for w in _tokens(code) if w.startswith("--")]
        if not flags:
            continue
        names = owners.get(number, ())
        if not names:
            yield Problem(doc, number, f"flag table row with {flags[0]}: no heading above names its command")
            continue
        params: list[object] = []
        for flag in flags:
            if not _FLAG.match(flag):
                continue
            owner = next((group.commands[n] for n in names if flag in _options(group.commands[n])), None)
            if owner is not None:
                param = next(p for p in owner.params if flag in (*p.opts, *getattr(p, "secondary_opts", ())))
                params += [param] if param not in params else []
                continue
            if any(_passes_through(group.commands[n]) for n in names) and is_vllm_flag(flag):
                continue
            yield Problem(doc, number, f"flag table of `{PROGRAM} {'/'.join(names)}` shows {flag}, which it does not have")
        if header and "default" in header and header.index("default") < len(cells):
            shown = _shown_values(cells[header.index("default")])
            if shown is not None and len(shown) == len(params):
                for param, value in zip(params, shown):
                    if _default_matches(param, value) is False:
                        yield Problem(doc, number, f"flag table of `{PROGRAM} {'/'.join(names)}` shows "
                                                   f"{param.opts[0]} defaulting to {value}; "  # type: ignore[attr-defined]
                                                   f"the command's default is {param.default!r}")  # type: ignore[attr-defined]


def anchors(text: str) -> set[str]:
    """The ``#anchors`` GitHub gives a Markdown file's headings (lower case, punctuation dropped, ``-`` for spaces)."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for _, line, in_code in _lines_with_fences(text):
        heading = None if in_code else _HEADING.match(line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(2).strip().lower()).replace(" ", "-")
            out.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return out


def _paths(doc: str, text: str, root: Path) -> Iterator[Problem]:
    """``scripts/...`` paths that must exist; relative links (and their ``#anchors``) and ``docs/*.md`` mentions that must resolve."""
    here = (root / doc).parent
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _SCRIPT.finditer(line):
            if not (root / match.group(0)).exists():
                yield Problem(doc, number, f"{match.group(0)} does not exist")
        for link in _LINK.findall(line):
            if link.startswith("#") and link[1:] not in anchors(text):
                yield Problem(doc, number, f"link to {link}: {doc} has no such heading")
        targets = [(here / m.split("#", 1)[0], m) for m in _LINK.findall(line)
                   if not re.match(r"^[a-z]+:", m) and not m.startswith("#")]
        targets += [(root / m, m) for m in _DOC_MENTION.findall(line)]
        for shown, target in {shown: target for target, shown in targets}.items():  # a link and a mention: once
            try:
                rel = target.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                rel = shown
            if rel in PENDING_DOCS:
                continue
            if not target.exists():
                yield Problem(doc, number, f"link to {shown} does not resolve")
            elif "#" in shown and target.suffix == ".md":
                anchor = shown.split("#", 1)[1]
                if anchor not in anchors(target.read_text(encoding="utf-8")):
                    yield Problem(doc, number, f"link to {shown}: {rel} has no heading #{anchor}")


def value_registries() -> dict[str, tuple[str, ...]]:
    """Flags whose values come from a registry: a doc may show only registered values."""
    from amygdala_vllm.pooling_modes import MODES
    from amygdala_vllm.reduce.core import METHODS

    return {"--pooling": tuple(MODES), "--method": tuple(METHODS)}


_VALUED = re.compile(r"(--pooling|--method)[ =]([a-z][\w,|\[\]-]*)")


def _registry_values(doc: str, text: str) -> Iterator[Problem]:
    """``--pooling mean|last|max``: every value registered; an ``a|b|c`` list of choices names them all."""
    registries = value_registries()
    for number, line in enumerate(text.splitlines(), start=1):
        for match in _VALUED.finditer(line.replace("\\|", "|")):
            flag, raw = match.groups()
            known = registries[flag]
            shown = [v for v in re.split(r"[|,\[\]]", raw) if v]
            for value in shown:
                if value not in known:
                    yield Problem(doc, number, f"{flag} {value}: not a registered value ({', '.join(known)})")
            if "|" in raw and set(shown) < set(known):
                missing = ", ".join(v for v in known if v not in shown)
                yield Problem(doc, number, f"{flag} {raw} lists the choices but leaves out {missing}")


def check_text(doc: str, text: str, root: Path = ROOT) -> list[Problem]:
    """Every problem in one doc: unknown commands, flags and defaults, unresolved scripts and doc links."""
    commands = command_names()
    problems: list[Problem] = []
    for line, rest in _code_commands(text):
        problems += check_command(doc, line, _tokens(rest))
    prose = _prose(text)
    for line, words, prefixed in _inline_commands(prose, commands):
        problems += check_command(doc, line, words, prefixed=prefixed)
    problems += list(_table_rows(doc, prose, commands))
    problems += list(_paths(doc, text, root))
    problems += list(_script_flags(doc, text, root))
    problems += list(_registry_values(doc, text))
    return problems


def shown_commands(text: str) -> set[str]:
    """The top-level commands a doc shows at least once (in code blocks or inline code)."""
    commands = command_names()
    shown = {_tokens(rest)[0] for _, rest in _code_commands(text) if _tokens(rest)}
    shown |= {words[0] for _, words, _ in _inline_commands(_prose(text), commands) if words}
    return shown & set(commands)


def doc_files(root: Path = ROOT) -> list[Path]:
    """README.md and every docs/*.md."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]
