"""What import-linter (`make lint`, contracts in pyproject.toml) does not check: no import cycle
between two modules of one room (counting imports inside functions and under TYPE_CHECKING, which
only hide a cycle), no source file over the size limit, the rooms that exist, and the public names
of `iberlite`. The floors between rooms, SQLite only in `store/`, no store in `cli/` and no
llama.cpp on `import iberlite` are import-linter's contracts."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "iberlite"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Every iberlite module `name` imports, wherever in the file the import statement is."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    found.add(sub)
                elif target in known:
                    found.add(target)
    found.discard(name)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path: Path) -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(g) == [["a", "b", "c"]]
    path = tmp_path / "w.py"
    path.write_text("def f():\n    from iberlite.x import y\nif TYPE_CHECKING:\n    import iberlite.z\n")
    assert _imports("iberlite.w", path, {"iberlite.x", "iberlite.z"}) == {"iberlite.x", "iberlite.z"}


def test_no_module_imports_itself_back(graph: dict[str, set[str]]) -> None:
    assert _cycles(graph) == [], "import cycles (counting imports in functions and TYPE_CHECKING)"


MAX_LINES = 500
"""The size past which a module is split by what it does (docs/architecture.md)."""


def test_no_source_file_is_over_the_size_limit() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines())
             for p in PACKAGE.rglob("*.py")}
    assert {f: n for f, n in sizes.items() if n > MAX_LINES} == {}, f"split files over {MAX_LINES} lines"


def test_every_room_is_a_package_and_the_top_level_holds_only_shared_modules() -> None:
    top = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert top == ["cache", "errors", "langs"]
    rooms = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert rooms == ["adapt", "analysis", "bench", "cli", "decide", "device", "engines", "fidelity",
                     "label", "models", "report", "run", "scoring", "store", "tasks"]


def test_the_public_names_import_and_are_the_library_objects() -> None:
    import iberlite
    from iberlite.decide.router import HybridRouter, Policy
    from iberlite.run.runner import run
    from iberlite.run.spec import RunSpec

    assert iberlite.HybridRouter is HybridRouter and iberlite.Policy is Policy
    assert iberlite.evaluate is run and iberlite.RunSpec is RunSpec
    assert set(iberlite.__all__) <= set(dir(iberlite))
    with pytest.raises(AttributeError):
        iberlite.no_such_name  # noqa: B018
