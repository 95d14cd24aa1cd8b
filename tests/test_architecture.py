"""The house rules of docs/architecture.md, drawn from the code's own imports: every package has its line in the
layer table, no import runs back up a layer or goes round in a circle, no module reads another's private name,
function-local imports say why they are local, and the wheel lists every package."""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import tomllib

REPO = Path(__file__).resolve().parent.parent
ARCHITECTURE = REPO / "docs" / "architecture.md"
MAX_LOOSE_MODULES = 12


@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported vbench module
    names: tuple[str, ...]  # the names taken from it (from X import a, b)
    line: int
    local: bool  # inside a function
    commented: bool  # a comment on its line or the line above


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[0] == "backbones":  # installed and imported as vbench.backbones
        parts = ["vbench", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    files = [*REPO.glob("vbench/**/*.py"), *REPO.glob("backbones/*.py")]
    return {module_name(path): path for path in files}


MODULES = source_files()


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[tuple[str, tuple[str, ...]]]:
    """(vbench module, names taken from it) for every module an import statement reaches."""
    if isinstance(node, ast.Import):
        return [(alias.name, ()) for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".") if is_package else module.split(".")[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join(parts + ([node.module] if node.module else []))
    found = []
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        found.append((submodule, ()) if submodule in MODULES else (base, (alias.name,)))
    return found


def _owner(target: str) -> str | None:
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, child.end_lineno + 1))
    return lines


def imports() -> list[Import]:
    found = []
    for module, path in MODULES.items():
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        tree = ast.parse(text)
        skipped = _type_checking_lines(tree)
        top_level = {id(node) for node in tree.body}
        explained = _explained_imports(tree, lines)
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)) or node.lineno in skipped:
                continue
            local = id(node) not in top_level and not _in_module_body(tree, node)
            commented = id(node) in explained
            for target, names in _resolve(module, node, path.name == "__init__.py"):
                owner = _owner(target) if target.startswith("vbench") else None
                found.append(Import(module, owner or target, names if owner == target else (), node.lineno, local,
                                    commented))
    return found


def _explained_imports(tree: ast.Module, lines: list[str]) -> set[int]:
    """Imports with a comment: on their own line, or above the first of the consecutive imports they stand in."""
    explained = set()
    for node in ast.walk(tree):
        for body in (getattr(node, field, None) for field in ("body", "orelse", "finalbody", "handlers")):
            if not isinstance(body, list):
                continue
            block: list[ast.stmt] = []
            for statement in [*body, None]:
                if isinstance(statement, (ast.Import, ast.ImportFrom)):
                    block.append(statement)
                    continue
                if block:
                    said = lines[block[0].lineno - 2].strip().startswith("#")
                    explained.update(id(item) for item in block if said or "#" in lines[item.lineno - 1])
                block = []
    return explained


def _in_module_body(tree: ast.Module, node: ast.AST) -> bool:
    """At module level, though nested in a try or if (an import that may fail)."""
    for top in tree.body:
        if isinstance(top, (ast.Try, ast.If)) and any(child is node for child in ast.walk(top)):
            return not any(isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(c is node for c in ast.walk(f))
                           for f in ast.walk(top))
    return False


IMPORTS = imports()


def layer_table() -> dict[str, int]:
    """``{package or module: layer}`` from the rows of docs/architecture.md's table."""
    layers = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\|\s*(\d+)\s*\|\s*([^|]+)\|", line)
        if match:
            for name in re.findall(r"`([\w.]+)`", match.group(2)):
                layers[name] = int(match.group(1))
    return layers


LAYERS = layer_table()


def entry_of(module: str) -> str | None:
    """The table's row that covers ``module``: the longest package or module name it starts with."""
    candidates = [name for name in LAYERS if module == name or module.startswith(name + ".")]
    return max(candidates, key=len) if candidates else None


def test_every_package_and_module_has_its_line_in_the_architecture_page():
    missing = sorted(m for m in MODULES if m != "vbench" and entry_of(m) is None)
    assert not missing, f"add a line to docs/architecture.md's table for: {', '.join(missing)}"
    stale = sorted(name for name in LAYERS if name not in MODULES)
    assert not stale, f"docs/architecture.md names packages that do not exist: {', '.join(stale)}"


def test_no_import_runs_back_up_a_layer():
    upward = []
    for item in IMPORTS:
        if not item.target.startswith("vbench") or item.target == "vbench" or item.source == "vbench":
            continue
        source, target = entry_of(item.source), entry_of(item.target)
        if source != target and LAYERS[target] >= LAYERS[item.source if source is None else source]:
            upward.append(f"{item.source}:{item.line} imports {item.target} (layer {LAYERS[target]} >= "
                          f"{LAYERS[source]})")
    assert not upward, "\n".join(upward)


def test_no_import_circle():
    edges: dict[str, set[str]] = {}
    for item in IMPORTS:
        if item.target in MODULES and item.target != item.source and item.target != "vbench":
            edges.setdefault(item.source, set()).add(item.target)
    circles = _strongly_connected(edges)
    assert not circles, f"import circles: {circles}"


def _strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
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

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def test_no_module_reads_another_modules_private_names():
    private = [f"{item.source}:{item.line} takes {', '.join(n for n in item.names if _private(n))} from {item.target}"
               for item in IMPORTS if item.target != item.source and any(_private(n) for n in item.names)
               and item.target.startswith("vbench")]
    attributes = []
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        vbench_names = {alias.asname or alias.name.split(".")[-1] for node in ast.walk(tree)
                        if isinstance(node, (ast.Import, ast.ImportFrom)) for alias in node.names
                        if (getattr(node, "module", None) or alias.name).startswith("vbench")}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name) \
                    and node.value.id in vbench_names:
                attributes.append(f"{module}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert not private + attributes, "\n".join(private + attributes)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_function_local_imports_say_why():
    silent = [f"{item.source}:{item.line} imports {item.target}" for item in IMPORTS if item.local and not item.commented]
    assert not silent, "a function-local import needs a short comment on why it is not at the top:\n" + "\n".join(
        dict.fromkeys(silent))


def test_few_loose_modules_in_the_package_root():
    loose = sorted(path.name for path in (REPO / "vbench").glob("*.py"))
    assert len(loose) <= MAX_LOOSE_MODULES, loose


def test_the_wheel_lists_every_package():
    configured = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {module for module, path in MODULES.items() if path.name == "__init__.py"}
    assert configured - {"vbench.suite_files"} == packages  # suite_files: the suites/ folder, data only
