"""The shape of the house, held against the code: rooms, import direction, no cycles, small modules.

Every ``import`` is read from the source (module level and inside functions alike, so an
import cannot dodge a cycle by hiding in a function):

- the four rooms depend one way: ``storage`` imports nothing of ours; ``appliance`` imports
  only ``storage``; ``plugins`` and ``web`` import only ``appliance`` (``web`` never reaches
  past it into ``storage``);
- inside ``appliance`` the sub-rooms are layered — leaves, then ``hooks``/``events``, then
  ``accounts``/``definitions``, ``query``, ``ingest``, ``runtime``, ``cli`` — and a module
  imports only from its own sub-room or a lower layer;
- no two modules of ours import each other, directly or round a longer loop;
- no module of ``appliance`` is much over 400 lines (440 at most).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ROOMS = ("storage", "appliance", "plugins", "web")
ALLOWED_ROOMS = {
    "storage": {"storage"},
    "appliance": {"appliance", "storage"},
    "plugins": {"plugins", "appliance"},
    "web": {"web", "appliance"},
}
# appliance's sub-rooms by layer; a module imports from its own sub-room or a lower layer.
LAYERS = {
    "leaves": 0,
    "hooks": 1,
    "events": 1,
    "accounts": 2,
    "definitions": 2,
    "query": 3,
    "ingest": 4,
    "exports": 5,  # report building, raw-event export
    "reports": 5,  # saved reports, schedules
    "alerts": 5,
    "imports": 5,  # importers, site archives
    "operations": 5,  # backup/restore, standby, metrics, privacy tools
    "runtime": 6,
    "cli": 7,
}
MAX_MODULE_LINES = 440  # "about 400": a module past this is split by noun


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The modules of ours that ``name`` imports (``from a import b`` counts ``a.b`` when it
    is a module, else ``a``)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _sub_room(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 else "leaves"


@pytest.mark.parametrize("room", ROOMS)
def test_rooms_import_one_way(room: str) -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if name.split(".")[0] == room
        for target in targets
        if target.split(".")[0] not in ALLOWED_ROOMS[room]
    )
    assert not wrong, "\n".join(wrong)


def test_appliance_sub_rooms_are_layered() -> None:
    wrong = []
    for name, targets in GRAPH.items():
        if not name.startswith("appliance.") or name == "appliance":
            continue
        here = _sub_room(name)
        for target in targets:
            if not target.startswith("appliance.") or target == "appliance":
                continue
            there = _sub_room(target)
            if there != here and LAYERS[there] >= LAYERS[here]:
                wrong.append(f"{name} ({here}) imports {target} ({there})")
    assert not wrong, "\n".join(sorted(wrong))


def test_every_sub_room_is_known() -> None:
    assert {_sub_room(name) for name in MODULES if name.startswith("appliance.")} <= set(LAYERS)


def test_no_import_cycles() -> None:
    # Tarjan's strongly connected components: any component of two or more is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert not cycles, cycles


def test_modules_stay_small() -> None:
    large = {
        name: lines
        for name, path in MODULES.items()
        if name.startswith("appliance") and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not large, large


def test_the_graph_is_read() -> None:
    """The walk sees real imports (a guard against a reader that silently finds nothing)."""
    assert "storage.environment" in GRAPH["appliance.runtime.appliance"] or "storage" in GRAPH["appliance.runtime.appliance"]
    assert "appliance.query.spec" in GRAPH["appliance.query.stats"] or "appliance.query.counted" in GRAPH["appliance.query.stats"]
    assert GRAPH["web.app"]
