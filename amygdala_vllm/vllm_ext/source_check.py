"""Check declared vLLM internals against a vLLM release's source, read with ``ast``: vLLM is never imported.

``scripts/check_vllm.py`` is the command; this module is the logic, so a test
can run it on the installed vLLM's files and on planted copies. What is
checked is exactly what the code declares (:func:`.internals.declared`:
``probes.READS`` and each runner view's ``READS``), so a view cannot read a
piece the check does not know about.

A source is a directory holding ``vllm/`` (site-packages, an unpacked wheel)
or a wheel file read as a zip. Per record (:class:`.internals.Internal`):

- ``module``: ``vllm/a/b.py`` or ``vllm/a/b/__init__.py`` exists;
- ``class`` / ``function``: a top-level ``class`` / ``def`` in the module
  (conditional blocks such as ``if TYPE_CHECKING:`` and ``try:`` included), or
  a name the module imports from inside vLLM (``from .x import Y``, ``from .x
  import *``), followed to its definition; a name imported from outside vLLM
  or bound by assignment is accepted as it stands;
- ``attribute`` without a dot: a module-level binding of any sort;
- ``Class.method``: a ``def`` on the class or a base class that is not a
  property; bases are followed through the module's imports, within vLLM;
- ``Class.attr``: a class-level assignment or annotation (dataclass, msgspec,
  TypedDict and NamedTuple fields), a ``@property``, or ``self.attr = ...`` /
  ``self.attr: T = ...`` in any method of the class or a base;
- ``params``: the declared names are the first parameters of the ``def``, in
  order (``self``/``cls`` dropped; ``*args``/``**kwargs`` never match a name),
  and every parameter after them has a default: exactly the calls this
  project makes still bind. A renamed, removed, reordered or newly inserted
  leading parameter fails, and so does a new required one; an appended
  parameter with a default does not (``params=()``: callable with no
  arguments).

A base class from outside vLLM (``torch.nn.Module``, ``msgspec.Struct``) is
not read: a member found only there is reported missing, naming that base.
"""

from __future__ import annotations

import ast
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from .internals import Internal, Minor, applies_to

__all__ = ["Declaration", "SourceTree", "Result", "check_record", "check_tree", "declared", "parse_minor", "reads_for"]

_ROOT = "vllm"
_MAX_HOPS = 12  # re-export chains followed (a cycle stops here)


def parse_minor(version: str) -> Minor:
    """``"0.34.0"`` -> ``(0, 34)``; a string that is not a release number raises ``ValueError``."""
    match = re.fullmatch(r"(\d+)\.(\d+)(?:\.(\d+))?(?:[.+-]?\w[\w.+-]*)?", version.strip())
    if not match:
        raise ValueError(f"{version!r} is not a vLLM version (expected e.g. 0.34.0)")
    return int(match.group(1)), int(match.group(2))


@dataclass
class _Module:
    """One parsed module: its top-level bindings."""

    name: str
    package: str  # the package relative imports resolve against
    defs: dict[str, ast.stmt]  # class/def/assignment nodes by bound name
    imports: dict[str, tuple[str, str | None]]  # bound name -> (module, attribute or None for "import m")
    stars: list[str]  # modules star-imported


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements at module level, including those inside ``if``/``try``/``with`` blocks."""
    for node in body:
        yield node
        if isinstance(node, ast.If):
            yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            yield from _top_level(node.body)
            for handler in node.handlers:
                yield from _top_level(handler.body)
            yield from _top_level(node.orelse)
            yield from _top_level(node.finalbody)
        elif isinstance(node, ast.With):
            yield from _top_level(node.body)


def _target_names(target: ast.expr) -> Iterator[str]:
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, (ast.Tuple, ast.List)):
        for elt in target.elts:
            yield from _target_names(elt)


def _absolute(package: str, level: int, module: str | None) -> str:
    if not level:
        return module or ""
    parts = package.split(".")
    base = parts[: len(parts) - level + 1]
    return ".".join(base + ([module] if module else []))


def _parse_module(name: str, source: str, is_package: bool) -> _Module:
    tree = ast.parse(source)
    package = name if is_package else name.rpartition(".")[0]
    mod = _Module(name, package, {}, {}, [])
    for node in _top_level(tree.body):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            mod.defs.setdefault(node.name, node)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                for n in _target_names(target):
                    mod.defs.setdefault(n, node)
        elif isinstance(node, ast.AnnAssign):
            for n in _target_names(node.target):
                mod.defs.setdefault(n, node)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    mod.imports.setdefault(alias.asname, (alias.name, None))
                else:
                    top = alias.name.split(".")[0]
                    mod.imports.setdefault(top, (top, None))
        elif isinstance(node, ast.ImportFrom):
            src = _absolute(package, node.level, node.module)
            for alias in node.names:
                if alias.name == "*":
                    mod.stars.append(src)
                else:
                    mod.imports.setdefault(alias.asname or alias.name, (src, alias.name))
    return mod


class SourceTree:
    """A vLLM release's Python source, read from a directory or a wheel without importing anything."""

    def __init__(self, read: Callable[[str], str | None], label: str):
        self._read = read
        self.label = label
        self._modules: dict[str, _Module | None] = {}

    @classmethod
    def from_dir(cls, root: Path) -> SourceTree:
        """``root`` holds ``vllm/`` (site-packages, an unpacked wheel) or is the ``vllm`` package itself."""
        root = Path(root)
        if root.name == _ROOT and (root / "__init__.py").is_file():
            root = root.parent
        if not (root / _ROOT / "__init__.py").is_file():
            raise FileNotFoundError(f"{root} holds no vllm package (no vllm/__init__.py)")

        def read(rel: str) -> str | None:
            path = root / rel
            return path.read_text(encoding="utf-8") if path.is_file() else None

        return cls(read, str(root / _ROOT))

    @classmethod
    def from_wheel(cls, path: Path) -> SourceTree:
        """A ``vllm-*.whl`` read as a zip (the file stays open for the tree's life)."""
        archive = zipfile.ZipFile(path)
        names = set(archive.namelist())
        if f"{_ROOT}/__init__.py" not in names:
            raise FileNotFoundError(f"{path} holds no vllm package (no vllm/__init__.py)")

        def read(rel: str) -> str | None:
            return archive.read(rel).decode("utf-8") if rel in names else None

        return cls(read, str(path))

    def version(self) -> str:
        """``__version__`` from ``vllm/_version.py`` (written by the release build)."""
        source = self._read(f"{_ROOT}/_version.py")
        if source is None:
            raise FileNotFoundError(f"{self.label}: no vllm/_version.py")
        for node in ast.parse(source).body:
            if isinstance(node, ast.Assign) and any("__version__" in _target_names(t) for t in node.targets):
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    return node.value.value
                # ``__version__ = version = '0.32.0'`` parses as one Assign with two targets
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.match(r"\d+\.\d+", node.value):
                return node.value
        raise ValueError(f"{self.label}: no version string in vllm/_version.py")

    def module(self, name: str) -> _Module | None:
        """The parsed module ``name`` (``vllm.a.b``), or None if the source has no such module."""
        if name not in self._modules:
            if name != _ROOT and not name.startswith(_ROOT + "."):
                self._modules[name] = None
                return None
            rel = name.replace(".", "/")
            source, is_package = self._read(f"{rel}.py"), False
            if source is None:
                source, is_package = self._read(f"{rel}/__init__.py"), True
            self._modules[name] = None if source is None else _parse_module(name, source, is_package)
        return self._modules[name]

    # -- name resolution -------------------------------------------------------------------------

    def resolve(self, module: str, name: str, hops: int = 0) -> tuple[_Module, ast.stmt | None, str] | None:
        """Where ``module.name`` is bound: ``(module, node, "")``; node None for a submodule or a name
        bound outside vLLM (then the third item is where it comes from). None if it is not there."""
        mod = self.module(module)
        if mod is None or hops > _MAX_HOPS:
            return None
        if name in mod.defs:
            return mod, mod.defs[name], ""
        if name in mod.imports:
            src, attr = mod.imports[name]
            if attr is None:
                return (mod, None, src) if self.module(src) is not None or not src.startswith(_ROOT) else None
            if self.module(f"{src}.{attr}") is not None:
                return mod, None, f"{src}.{attr}"
            if not (src == _ROOT or src.startswith(_ROOT + ".")):
                return mod, None, f"{src}.{attr}"
            return self.resolve(src, attr, hops + 1)
        if self.module(f"{module}.{name}") is not None:
            return mod, None, f"{module}.{name}"
        for star in mod.stars:
            found = self.resolve(star, name, hops + 1)
            if found is not None:
                return found
        return None

    def _class(self, module: str, name: str) -> tuple[_Module, ast.ClassDef] | str:
        found = self.resolve(module, name)
        if found is None:
            return f"no {name} in {module}"
        mod, node, origin = found
        if isinstance(node, ast.ClassDef):
            return mod, node
        if node is None:
            return f"{module}.{name} comes from {origin}, outside the vLLM source"
        return f"{module}.{name} is not a class"

    def _base_classes(self, mod: _Module, cls: ast.ClassDef) -> Iterator[tuple[_Module, ast.ClassDef] | str]:
        for base in cls.bases:
            if isinstance(base, ast.Subscript):  # Generic[T], Protocol[T]
                base = base.value
            if isinstance(base, ast.Name):
                found = self._class(mod.name, base.id)
            elif isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name):
                head = mod.imports.get(base.value.id)
                module = head[0] if head and head[1] is None else (f"{head[0]}.{head[1]}" if head else "")
                found = self._class(module, base.attr) if self.module(module) else f"{ast.unparse(base)} (outside vLLM)"
            else:
                found = f"{ast.unparse(base)} (not followed)"
            yield found

    def mro(self, module: str, name: str) -> tuple[list[tuple[_Module, ast.ClassDef]], list[str]]:
        """The class and its vLLM bases (depth first, each once), and the bases that could not be read."""
        first = self._class(module, name)
        if isinstance(first, str):
            return [], [first]
        seen: list[tuple[_Module, ast.ClassDef]] = []
        unread: list[str] = []
        stack = [first]
        while stack:
            mod, cls = stack.pop(0)
            if any(c is cls for _, c in seen):
                continue
            seen.append((mod, cls))
            for base in self._base_classes(mod, cls):
                if isinstance(base, str):
                    if base not in unread and not base.startswith(("no ", "object")):
                        unread.append(base)
                else:
                    stack.append(base)
        return seen, unread


# -- members -------------------------------------------------------------------------------------

_PROPERTY_DECORATORS = {"property", "cached_property", "functools.cached_property"}


def _is_property(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(ast.unparse(d) in _PROPERTY_DECORATORS or ast.unparse(d).endswith(".setter") for d in fn.decorator_list)


def _class_body(cls: ast.ClassDef) -> Iterator[ast.stmt]:
    yield from _top_level(cls.body)


def _self_assigns(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names ``x`` assigned as ``self.x = ...`` / ``self.x: T = ...`` anywhere in ``fn``."""
    if not fn.args.args:
        return set()
    me = fn.args.args[0].arg
    out: set[str] = set()
    for node in ast.walk(fn):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        while targets:
            t = targets.pop()
            if isinstance(t, (ast.Tuple, ast.List)):
                targets.extend(t.elts)
            elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == me:
                out.add(t.attr)
    return out


def _find_method(cls: ast.ClassDef, name: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    for node in _class_body(cls):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name and not _is_property(node):
            return node
    return None


def _has_attribute(cls: ast.ClassDef, name: str) -> str | None:
    """How ``cls`` itself binds ``name`` as data (``"field"``, ``"property"``, ``"self.x ="``), or None."""
    for node in _class_body(cls):
        if isinstance(node, ast.Assign) and any(name in _target_names(t) for t in node.targets):
            return "class attribute"
        if isinstance(node, ast.AnnAssign) and name in _target_names(node.target):
            return "field"
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name and _is_property(node):
            return "property"
    for node in _class_body(cls):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and name in _self_assigns(node):
            return f"self.{name} = ... in {node.name}"
    return None


def _params(fn: ast.FunctionDef | ast.AsyncFunctionDef, is_method: bool) -> list[tuple[str, bool]]:
    """``(name, has_default)`` of each named parameter, in order; ``self``/``cls`` dropped for a method."""
    a = fn.args
    positional = a.posonlyargs + a.args
    first_default = len(positional) - len(a.defaults)
    out = [(p.arg, i >= first_default) for i, p in enumerate(positional)]
    static = any(ast.unparse(d) == "staticmethod" for d in fn.decorator_list)
    if is_method and not static and out:
        out = out[1:]
    return out + [(p.arg, d is not None) for p, d in zip(a.kwonlyargs, a.kw_defaults)]


def _check_params(fn: ast.FunctionDef | ast.AsyncFunctionDef, want: tuple[str, ...], is_method: bool) -> str | None:
    """The declared names must be the first parameters, in order, and every later one must have a default."""
    have = _params(fn, is_method)
    names = [n for n, _ in have]
    if tuple(names[: len(want)]) != tuple(want):
        return f"parameters are ({', '.join(names)}), expected ({', '.join(want)}, ...)"
    required = [n for n, has_default in have[len(want):] if not has_default]
    if required:
        return f"parameters are ({', '.join(names)}): {', '.join(required)} after ({', '.join(want)}) has no default"
    return None


def _outside(unread: list[str]) -> str:
    return f" (bases not read: {', '.join(unread)})" if unread else ""


def check_record(tree: SourceTree, record: Internal) -> str | None:
    """None if ``record`` is present in ``tree``, else why not (one line)."""
    if tree.module(record.module) is None:
        return f"no module {record.module}"
    if record.kind == "module":
        return None
    head, dot, member = record.name.partition(".")
    if not dot:
        found = tree.resolve(record.module, head)
        if found is None:
            return f"no {head} in {record.module}"
        _, node, _origin = found
        if record.kind == "class" and node is not None and not isinstance(node, (ast.ClassDef, ast.Assign, ast.AnnAssign)):
            return f"{head} is not a class"
        if record.kind == "function":
            if isinstance(node, ast.ClassDef):
                return f"{head} is a class, not a function"
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and record.params is not None:
                return _check_params(node, record.params, is_method=False)
            if record.params is not None:
                return f"{head} is not a def here; its parameters cannot be read"
        return None
    classes, unread = tree.mro(record.module, head)
    if not classes:
        return unread[0]
    names = " / ".join(c.name for _, c in classes)
    if record.kind == "method":
        for _, cls in classes:
            fn = _find_method(cls, member)
            if fn is not None:
                return _check_params(fn, record.params, is_method=True) if record.params is not None else None
        return f"no method {member} on {names}{_outside(unread)}"
    if record.kind == "attribute":
        for _, cls in classes:
            if _has_attribute(cls, member) is not None:
                return None
        return f"no attribute {member} on {names}{_outside(unread)}"
    return f"kind {record.kind!r} cannot have a member"


@dataclass(frozen=True)
class Result:
    """One record checked against one source: ``missing`` is None when it is there."""

    owner: str
    record: Internal
    missing: str | None


def check_tree(tree: SourceTree, records: list[tuple[str, Internal]]) -> list[Result]:
    """Check each ``(owner, record)`` against ``tree``."""
    return [Result(owner, rec, check_record(tree, rec)) for owner, rec in records]


@dataclass(frozen=True)
class Declaration:
    """One declaring owner's records: ``probes`` (vLLM-global reads) or one runner view."""

    #: ``"probes"`` or ``"v1 view"`` (a runner view, by its kind): shown by the check.
    owner: str
    reads: tuple[Internal, ...]
    #: The minors this owner exists for (a view's ``VERSIONS``); ``None``: every minor.
    versions: tuple[Minor, ...] | None = None


def declared() -> list[Declaration]:
    """Everything the package declares it reads: ``probes.READS`` and ``READS`` of each view in ``runners.VIEWS``.

    The one list the version check reads. Importing the owners needs torch and
    numpy, never vLLM (they import vLLM only inside functions). It lives here,
    not in ``internals.py``, because the owners import ``internals``.
    """
    from . import probes
    from .runners import VIEWS

    out = [Declaration("probes", tuple(probes.READS))]
    for kind, view in VIEWS.items():
        out.append(Declaration(f"{kind} view", tuple(view.READS),
                               tuple(view.VERSIONS)))
    return out


def reads_for(minor: Minor, declarations: list[Declaration] | None = None) -> list[tuple[str, Internal]]:
    """``(owner, record)`` for every declared record that vLLM ``minor`` should have."""
    decls = declared() if declarations is None else declarations
    return [(d.owner, r) for d in decls if d.versions is None or minor in d.versions
            for r in d.reads if applies_to(r, minor)]
