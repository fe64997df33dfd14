"""The house: the import graph of rlmusic/, envs/, db/ and app/ parsed from the source
(every import, also those inside functions), checked for circles and against the layer
rules of docs/design.md; and the house rules every module keeps."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("rlmusic", "envs", "db", "app")
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


MODULES = all_modules()


def resolve(name: str) -> str | None:
    """The project module an imported name lives in (``a.b.c`` -> ``a.b`` when ``c`` is no
    module), or None for anything outside the project."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(path: Path) -> set[str]:
    """Project modules ``path`` imports, anywhere in the file."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names = [f"{base}.{a.name}" for a in node.names] + [base]
        else:
            continue
        for name in names:
            target = resolve(name)
            if target is not None and target != me:
                found.add(target)
    return found


GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def test_the_parser_sees_the_project():
    assert "rlmusic.tuning.run" in GRAPH and "envs.rewards" in GRAPH["rlmusic.tuning.rewards"]
    assert "db.engine" in GRAPH["db.schema"]


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_circle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


def test_the_cycle_finder_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def package_of(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "rlmusic" and len(parts) > 1 else parts[0]


# who may NOT be imported by whom (docs/design.md, "Layout and layers")
FORBIDDEN = {
    "rlmusic.music": ("rlmusic.corpus", "rlmusic.models", "rlmusic.tuning", "rlmusic.feedback",
                      "rlmusic.evaluation", "rlmusic.audio", "rlmusic.jobs", "rlmusic.cli", "rlmusic.runtime",
                      "rlmusic.environment", "envs",
                      "db", "app"),
    "rlmusic.corpus": ("rlmusic.models", "rlmusic.tuning", "rlmusic.feedback", "rlmusic.evaluation",
                       "rlmusic.jobs", "rlmusic.cli", "envs", "db", "app"),
    "rlmusic.audio": ("rlmusic.models", "rlmusic.tuning", "rlmusic.feedback", "rlmusic.evaluation",
                      "rlmusic.jobs", "rlmusic.cli", "envs", "db", "app"),
    "rlmusic.models": ("rlmusic.tuning", "rlmusic.feedback", "rlmusic.evaluation", "rlmusic.jobs", "rlmusic.cli",
                       "envs", "db", "app"),
    "rlmusic.evaluation": ("rlmusic.tuning", "rlmusic.feedback", "rlmusic.jobs", "rlmusic.cli", "envs", "db", "app"),
    "rlmusic.harmony": ("rlmusic.tuning", "rlmusic.feedback", "rlmusic.evaluation", "rlmusic.jobs", "rlmusic.cli",
                        "envs", "db", "app"),
    "envs": ("rlmusic.tuning", "rlmusic.feedback", "rlmusic.jobs", "rlmusic.cli", "db", "app"),
    "rlmusic.tuning": ("rlmusic.feedback", "rlmusic.jobs", "rlmusic.cli", "db", "app"),
    "rlmusic.feedback": ("rlmusic.jobs", "rlmusic.cli", "db", "app"),
    # jobs: runs tuning, rounds' parts and generation, records in db; the CLI sits above it
    "rlmusic.jobs": ("rlmusic.cli", "app"),
    # deploy: the proxy's site file; the public URL's rule is db's (db.settings)
    "rlmusic.deploy": ("rlmusic.models", "rlmusic.tuning", "rlmusic.feedback", "rlmusic.evaluation", "rlmusic.jobs",
                       "rlmusic.cli", "envs", "app"),
    "db": ("rlmusic", "envs", "app"),
    "app": ("rlmusic.tuning", "rlmusic.feedback", "rlmusic.models.pretrain", "rlmusic.models.vae_train",
            "rlmusic.harmony.train", "rlmusic.jobs", "rlmusic.cli", "envs"),
    "rlmusic.runtime": ("rlmusic", "envs", "db", "app"),
    "rlmusic.fileio": ("rlmusic", "envs", "db", "app"),
    "rlmusic.environment": ("rlmusic", "envs", "db", "app"),
}


def violations() -> list[str]:
    out = []
    for module, targets in GRAPH.items():
        rules = [(layer, banned) for layer, banned in FORBIDDEN.items()
                 if module == layer or module.startswith(layer + ".")]
        for layer, banned in rules:
            for target in targets:
                if any(target == b or target.startswith(b + ".") for b in banned):
                    out.append(f"{module} imports {target} ({layer} must not)")
    return sorted(out)


def test_layer_rules_hold():
    assert violations() == []


def test_music_uses_numpy_and_pretty_midi_only():
    allowed = {"numpy", "pretty_midi", "__future__"}
    for name, path in MODULES.items():
        if not name.startswith("rlmusic.music"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            third_party = {r for r in roots if r not in allowed and r != "rlmusic" and not is_stdlib(r)}
            assert not third_party, f"{name} imports {third_party}"


def is_stdlib(name: str) -> bool:
    import sys

    return name in sys.stdlib_module_names


@pytest.mark.parametrize("name", sorted(MODULES))
def test_house_rules(name):
    path = MODULES[name]
    text = path.read_text()
    tree = ast.parse(text)
    assert text.count("\n") <= MAX_LINES, f"{path} has {text.count(chr(10))} lines (max {MAX_LINES})"
    top = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert "__getattr__" not in top, f"{path}: module __getattr__ (a shim for moved names)"
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            names = [e.value for e in node.value.elts if isinstance(e, ast.Constant)]
            assert not [n for n in names if n.startswith("_")], f"{path}: private names in __all__"
    if path.name == "__init__.py" and name.count(".") <= 1 and name != "app":
        assert ast.get_docstring(tree), f"{name} has no docstring saying what it owns"


def test_the_checks_catch_a_violation():
    graph = {**GRAPH, "rlmusic.music.extra": {"rlmusic.tuning.run"}}
    bad = ["rlmusic.music.extra imports rlmusic.tuning.run (rlmusic.music must not)"]
    original = dict(GRAPH)
    try:
        GRAPH.clear()
        GRAPH.update(graph)
        assert violations() == bad
    finally:
        GRAPH.clear()
        GRAPH.update(original)
