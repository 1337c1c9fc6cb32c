"""The folders tell the data flow, and imports point one way (README, "Architecture"):

    dfstream (composition root) → service → sinks → pipeline → stream → core

A package imports only packages below it; inside ``pipeline`` the folders are layered the same
way: models → judging → runtime / evaluation, with the monitoring vocabulary and errors below all."""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

from tests.helpers import REPO

# lowest first; a package may import only those before it
LAYERS = ["core", "stream", "pipeline", "sinks", "service", "dfstream"]
# inside pipeline: a folder may import only the folders before it (and the root modules)
PIPELINE_LAYERS = ["monitoring", "models", "judging", "runtime", "evaluation"]


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute (relative imports resolved against its package)."""
    tree = ast.parse(path.read_text())
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                names.add(".".join(base + ([node.module] if node.module else [])))
            elif node.module:
                names.add(node.module)
    return names


@pytest.mark.parametrize("package", [p for p in LAYERS if (REPO / p).is_dir()])
def test_packages_import_only_downwards(package):
    above = set(LAYERS[LAYERS.index(package) + 1 :])
    for path in (REPO / package).rglob("*.py"):
        wrong = {name for name in imports(path) if name.split(".")[0] in above}
        assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}, a package above {package}"


def test_sinks_know_the_pipeline_only_through_its_vocabulary():
    """Sinks receive events and read the monitor; they never reach into stream/ or the judging itself."""
    allowed = (
        "pipeline.runtime.events",
        "pipeline.runtime.sink",
        "pipeline.runtime.config",
        "pipeline.runtime.live",
        "pipeline.runtime.drawing",
        "pipeline.runtime.numbering",
        "pipeline.monitoring",
        "stream.config",
        "stream.urls",
    )
    for path in (REPO / "sinks").rglob("*.py"):
        wrong = {n for n in imports(path) if n.split(".")[0] in ("pipeline", "stream") and not n.startswith(allowed)}
        assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}"


@pytest.mark.parametrize("folder", PIPELINE_LAYERS)
def test_pipeline_folders_import_only_downwards(folder):
    above = PIPELINE_LAYERS[PIPELINE_LAYERS.index(folder) + 1 :]
    for path in (REPO / "pipeline" / folder).rglob("*.py"):
        wrong = {n for n in imports(path) if any(n == f"pipeline.{a}" or n.startswith(f"pipeline.{a}.") for a in above)}
        assert not wrong, f"{path.relative_to(REPO)} imports {sorted(wrong)}, a folder above {folder}"
    # runtime and evaluation are siblings: neither needs the other
    if folder in ("runtime", "evaluation"):
        sibling = "evaluation" if folder == "runtime" else "runtime"
        for path in (REPO / "pipeline" / folder).rglob("*.py"):
            assert not any(n.startswith(f"pipeline.{sibling}") for n in imports(path)), path


def _modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package's __init__ under the package's name)."""
    found = {}
    for package in LAYERS:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def module_graph() -> dict[str, set[str]]:
    """Which of our modules each module imports, at any depth of its code (an import inside a
    function hides a circle from Python, not from this). ``from a import b`` counts as importing
    the module ``a.b`` when there is one, else ``a``; a module's own package is not an edge."""
    modules = _modules()

    def ours(name: str) -> str | None:
        parts = name.split(".")
        for end in range(len(parts), 0, -1):
            if ".".join(parts[:end]) in modules:
                return ".".join(parts[:end])
        return None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = base[: len(base) - node.level + 1]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [f"{prefix}.{alias.name}" for alias in node.names] + [prefix]
            for target in targets:
                module = ours(target)
                if module and module != name and not name.startswith(module + "."):
                    edges.add(module)
        graph[name] = edges
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_others():
    assert circles(module_graph()) == []


def test_the_circle_finder_sees_a_circle_hidden_in_a_function():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_no_folder_grows_past_a_dozen_modules():
    for folder in [REPO / p for p in LAYERS if (REPO / p).is_dir()] + [REPO / "pipeline" / f for f in PIPELINE_LAYERS]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 12, (
            f"{folder.relative_to(REPO)} has {len(modules)} modules: split it by the question they answer"
        )


def test_the_registry_never_imports_the_detectors():
    """Built-in detectors register themselves by name; the registry does not know them."""
    for module in ("registry.py", "plugins.py"):
        assert not any(
            n.startswith("pipeline.models.detectors") for n in imports(REPO / "pipeline" / "models" / module)
        )


BUILTIN_ERRORS = {
    name
    for name in dir(builtins)
    if isinstance(getattr(builtins, name), type) and issubclass(getattr(builtins, name), BaseException)
}


def test_every_error_dfstream_raises_grows_from_its_root():
    """An exception class deriving straight from a builtin one is allowed only in core/errors.py,
    where each also derives from DfstreamError (some keep a builtin second parent: ValueError, KeyError)."""
    for package in LAYERS:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                    if bases & BUILTIN_ERRORS and path != REPO / "core" / "errors.py":
                        raise AssertionError(f"{path.relative_to(REPO)}: {node.name} derives from {sorted(bases)}")
    import core.errors

    for name in dir(core.errors):
        value = getattr(core.errors, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, core.errors.DfstreamError), name


def test_the_image_holds_every_package():
    copied = {line.split()[1] for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    assert set(LAYERS) <= copied, f"the Dockerfile does not copy {sorted(set(LAYERS) - copied)}"
