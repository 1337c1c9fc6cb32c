"""The folders tell the data flow, and imports point one way (README, "Architecture"):

    dfstream (composition root) → service → sinks → pipeline → stream

A package imports only packages below it; inside ``pipeline`` the folders are layered the same
way: models → judging → runtime / evaluation, with the monitoring vocabulary and errors below all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers import REPO

# lowest first; a package may import only those before it
LAYERS = ["stream", "pipeline", "sinks", "service", "dfstream"]
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
    allowed = ("pipeline.runtime.events", "pipeline.runtime.sink", "pipeline.runtime.config", "pipeline.runtime.live", "pipeline.runtime.drawing", "pipeline.runtime.numbering",
               "pipeline.monitoring", "pipeline.errors", "stream.config", "stream.urls")  # fmt: skip
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


def test_no_folder_grows_past_a_dozen_modules():
    for folder in [REPO / p for p in LAYERS if (REPO / p).is_dir()] + [REPO / "pipeline" / f for f in PIPELINE_LAYERS]:
        modules = [p for p in folder.glob("*.py") if p.name != "__init__.py"]
        assert len(modules) <= 12, f"{folder.relative_to(REPO)} has {len(modules)} modules: split it by the question they answer"


def test_the_registry_never_imports_the_detectors():
    """Built-in detectors register themselves by name; the registry does not know them."""
    for module in ("registry.py", "plugins.py"):
        assert not any(n.startswith("pipeline.models.detectors") for n in imports(REPO / "pipeline" / "models" / module))


def test_the_seed_api_is_exactly_the_public_surface():
    import pipeline

    public = {name for name in dir(pipeline) if not name.startswith("_") and name not in PIPELINE_LAYERS + ["errors"]}
    assert set(pipeline.__all__) == public == {
        "AugmentationType", "BaseDetector", "DetectionResult", "EnsembleConfig", "EnsembleManager", "EnsembleResult",
        "FusionMethod", "ModelInfo", "ModelRegistry", "ModelStatus", "MonitoringConfig", "PerformanceMonitor",
        "PreprocessingConfig", "UnifiedPreprocessor",
    }  # fmt: skip
