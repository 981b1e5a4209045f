"""The package's import graph: three layers, each importing only downwards, and no circles.

Every ``import`` in ``src/asgiri`` is read from the source (module level, inside
functions and under ``TYPE_CHECKING`` alike: a lazy import or one made for a type
annotation still ties the two modules together), and the graph is checked
against the layering ``docs/ARCHITECTURE.md`` describes:

- ``protocol/`` (sans-I/O) imports nothing of asgiri outside ``protocol/``;
- ``asgi/`` imports ``protocol/`` and the shared values it is handed
  (``errors``, ``access_format``), never the configuration tree or ``server/``;
- the shared modules (``config``, ``errors``, ``logging``, ...) import neither
  ``asgi/`` nor ``server/`` nor the entry points;
- only the entry points (``cli``, ``workers``, ``__main__``) import everything;
- no module reaches itself again through its imports.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "asgiri"

#: Top-level modules that run a server: they may import any layer.
ENTRY_POINTS = frozenset({"asgiri.cli", "asgiri.workers", "asgiri.__main__"})
#: What ``asgi/`` may use besides ``protocol/``: values, never the configuration itself.
ASGI_MAY_USE = frozenset({"asgiri.errors", "asgiri.access_format"})


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> Iterator[tuple[str, int]]:
    """(imported asgiri module, line) for every import statement in ``path``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "asgiri":
                    yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.split(".")[0] != "asgiri":
                continue
            for alias in node.names:
                # ``from . import reload`` imports the submodule, not the package.
                submodule = f"{target}.{alias.name}"
                yield (submodule if submodule in known else target), node.lineno


def graph() -> dict[str, dict[str, int]]:
    found = modules()
    known = set(found)
    edges: dict[str, dict[str, int]] = {}
    for name, path in found.items():
        targets: dict[str, int] = {}
        for target, line in imports_of(name, path, known):
            # A submodule import also runs its package's __init__, but that is the
            # package's business: the edge that matters is to the module named.
            if target != name:
                targets.setdefault(target, line)
        edges[name] = targets
    return edges


def layer(name: str) -> str:
    parts = name.split(".")
    if len(parts) > 2 and parts[1] in ("protocol", "asgi", "server"):
        return parts[1]
    if name in ("asgiri.protocol", "asgiri.asgi", "asgiri.server"):
        return parts[1]
    if name in ENTRY_POINTS:
        return "entry"
    return "shared"


def allowed(source: str, target: str) -> bool:
    src, dst = layer(source), layer(target)
    if target == "asgiri":  # the package itself: its __version__
        return src in ("shared", "entry")
    if src == "protocol":
        return dst == "protocol"
    if src == "asgi":
        return dst in ("protocol", "asgi") or target in ASGI_MAY_USE
    if src == "shared":
        return dst in ("shared", "protocol")
    if src == "server":
        return dst != "entry"
    return True


def cycles(edges: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in edges:
                continue
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_walker_sees_relative_lazy_and_type_only_imports(tmp_path: Path) -> None:
    # The checks below are only as good as the walker: feed it each kind of import.
    source = (
        "from typing import TYPE_CHECKING\n"
        "from ..config import Config\n"
        "from . import reload\n"
        "import asgiri.errors\n"
        "if TYPE_CHECKING:\n"
        "    from .server import Server\n"
        "def f():\n"
        "    from ..asgi.lifespan import Lifespan\n"
    )
    path = tmp_path / "asgiri" / "server" / "x.py"
    path.parent.mkdir(parents=True)
    path.write_text(source, encoding="utf-8")
    known = {"asgiri.server.reload", "asgiri.server.server", "asgiri.asgi.lifespan"}
    found = {target for target, _ in imports_of("asgiri.server.x", path, known)}
    assert found == {
        "asgiri.config",
        "asgiri.server.reload",
        "asgiri.errors",
        "asgiri.server.server",
        "asgiri.asgi.lifespan",
    }
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert not allowed("asgiri.protocol.h2", "asgiri.config")
    assert not allowed("asgiri.asgi.lifespan", "asgiri.config")
    assert allowed("asgiri.server.h1", "asgiri.asgi.http_stream")


def test_no_import_circle() -> None:
    found = cycles(graph())
    assert found == [], "modules that import each other (directly or through others): " + str(found)


def test_no_layer_imports_a_layer_above_it() -> None:
    wrong = [
        f"{source} (line {line}) imports {target}"
        for source, targets in graph().items()
        for target, line in targets.items()
        if not allowed(source, target)
    ]
    assert wrong == []


def test_only_the_server_layer_imports_asyncio() -> None:
    importers = []
    for name, path in modules().items():
        if layer(name) not in ("protocol", "asgi"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            if any(n.split(".")[0] == "asyncio" for n in names):
                importers.append(f"{name} (line {node.lineno})")
    assert importers == []


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_opens_with_the_concern_it_holds(name: str) -> None:
    docstring = ast.get_docstring(ast.parse(modules()[name].read_text(encoding="utf-8")))
    assert docstring, f"{name} has no opening docstring"
    assert len(docstring.split()) >= 4, f"{name}: {docstring!r} says too little"
