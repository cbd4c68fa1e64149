"""The layering that keeps the code readable (issue #18): no import cycle inside `unet` (counting imports made
inside functions too), and Streamlit only in `unet/ui` and `pages`, so the core and the command line never need
a web server."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "unet"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)  # `from unet import runs`
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules and m != name and m != "unet"}
            for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_unet_has_no_import_cycle():
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_streamlit_is_imported_only_by_the_pages_and_unet_ui():
    offenders = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                 if "ui" not in p.relative_to(PACKAGE).parts[:1]
                 and any(m == "streamlit" or m.startswith("streamlit.") for m in _imports(p))]
    assert offenders == [], f"the core imports Streamlit: {offenders}"


def _written_levels() -> dict[str, int]:
    """docs/CONTRACTS.md's "Layers" list: core module name -> its level (1 = foundations)."""
    import re

    text = (ROOT / "docs" / "CONTRACTS.md").read_text(encoding="utf-8")
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    levels: dict[str, int] = {}
    for match in re.finditer(r"^(\d)\. (.*?)(?=^\d\. |\Z)", section, re.S | re.M):
        for name in re.findall(r"`([a-z_]+)`", match.group(2)):
            levels.setdefault(name, int(match.group(1)))
    return levels


def test_every_core_module_has_a_written_level_and_imports_only_its_level_or_below():
    levels = _written_levels()
    graph = _graph()
    core = {m for m in graph if m.count(".") == 1 and m not in ("unet.__main__", "unet.ui")}
    unplaced = sorted(m for m in core if m.split(".")[1] not in levels)
    assert unplaced == [], f"add these to the Layers list in docs/CONTRACTS.md: {unplaced}"
    upward = sorted(f"{m} (level {levels[m.split('.')[1]]}) imports {d}"
                    for m in core for d in graph[m]
                    if d.startswith("unet.ui") or levels.get(d.split(".")[1], 0) > levels[m.split(".")[1]])
    assert upward == [], "imports that go up the layers: " + "; ".join(upward)
