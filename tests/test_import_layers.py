"""The package's import structure: no cycle among ofakd's modules, and layers that import one way only.

The graph is read from the source (every ``import`` and ``from ... import``, inside functions too, but not
under ``if TYPE_CHECKING``). Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``, so an import
reaches the target's parent packages as well (not the importer's own, which are already running).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ofakd

PACKAGE = Path(ofakd.__file__).parent

LAYERS_BELOW = {
    # package: the ofakd packages it must not import (it sits below them), lowest first; every package is listed
    "ofakd.run_folder": {"data", "models", "teacher", "distill", "config", "cache", "export", "analysis", "engine",
                         "tuning", "commands"},
    "ofakd.data": {"models", "teacher", "distill", "config", "cache", "export", "analysis", "engine", "tuning",
                   "commands"},
    "ofakd.models": {"teacher", "distill", "config", "cache", "export", "analysis", "engine", "tuning", "commands"},
    "ofakd.teacher": {"distill", "config", "cache", "export", "analysis", "engine", "tuning", "commands"},
    "ofakd.distill": {"config", "cache", "export", "analysis", "engine", "tuning", "commands"},
    "ofakd.config": {"cache", "export", "analysis", "engine", "tuning", "commands"},
    "ofakd.cache": {"distill", "export", "analysis", "engine", "tuning", "commands"},
    "ofakd.export": {"analysis", "engine", "tuning", "commands"},
    "ofakd.analysis": {"export", "engine", "tuning", "commands"},
    "ofakd.engine": {"export", "analysis", "tuning", "commands"},
    "ofakd.tuning": {"export", "commands"},
    "ofakd.commands": set(),
}


def module_files() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package)."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def imported_names(module: str, path: Path, is_package: bool) -> set[str]:
    """Every dotted name ``module`` imports at run time (absolute; ``from x import y`` gives x and x.y)."""
    tree = ast.parse(path.read_text())
    typing_only = {
        id(node) for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    package = module.split(".") if is_package else module.split(".")[:-1]
    names = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names |= {target} | {f"{target}.{alias.name}" for alias in node.names}
    return names


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    graph: dict[str, set[str]] = {}
    for module, (path, is_package) in files.items():
        running = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
        edges = set()
        for name in imported_names(module, path, is_package):
            parts = name.split(".")
            edges |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} - running
        graph[module] = {m for m in edges if m in files}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

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


def test_no_import_cycle_among_ofakd_modules():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", sorted(LAYERS_BELOW))
def test_layers_import_one_way(package):
    graph = import_graph()
    forbidden = {f"ofakd.{name}" for name in LAYERS_BELOW[package]}
    wrong = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items() if module == package or module.startswith(package + ".")
        for target in targets if any(target == f or target.startswith(f + ".") for f in forbidden)
    )
    assert wrong == []


def test_every_package_has_its_place_in_the_layers():
    packages = {f"ofakd.{path.parent.name}" for path in PACKAGE.glob("*/__init__.py")}
    assert set(LAYERS_BELOW) == packages
    assert set().union(*LAYERS_BELOW.values()) <= {name.removeprefix("ofakd.") for name in packages}


CONFIG_DRIVER = """
import sys
import ofakd.config, ofakd.data.config, ofakd.models.model_config, ofakd.teacher.teacher_config
from ofakd.config import load_config
cfg = load_config("demo", [("method.name", "vanilla")]) if "--validate" in sys.argv else None
print("torch" in sys.modules, "ofakd.distill" in sys.modules)
"""


def test_the_config_imports_no_torch():
    """Every section of a run config (``ofakd.config``, and each part's own: data, models, teacher) imports
    without torch (what ``ofakd --help`` builds its flags from); validating one resolves the method, which does."""
    import subprocess
    import sys

    lines = [subprocess.run([sys.executable, "-c", CONFIG_DRIVER, *flag], capture_output=True, text=True,
                            timeout=300, check=True).stdout.strip() for flag in ([], ["--validate"])]
    assert lines == ["False False", "True True"]


def test_no_two_modules_share_a_file_name():
    names = [path.name for path in PACKAGE.rglob("*.py") if path.name != "__init__.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []


SUBPACKAGES_DRIVER = """
import sys
import ofakd
light = "torch" not in sys.modules
loaded = {name: getattr(ofakd, name).__name__ for name in ofakd.SUBPACKAGES}
print(light, loaded == {name: "ofakd." + name for name in ofakd.SUBPACKAGES}, set(ofakd.SUBPACKAGES) <= set(dir(ofakd)))
print(ofakd.evaluation.load_student.__module__, ofakd.teacher.LiveTeacher.__name__, ofakd.cache.CachedTeacher.__name__,
      ofakd.export.export_student.__name__, ofakd.data.DataConfig.__name__, ofakd.config.RunConfig.__name__)
"""


def test_every_public_subpackage_loads_on_first_use_after_a_bare_import():
    """``import ofakd; ofakd.evaluation.load_student(...)`` as the README writes it, in a fresh interpreter: the
    bare import stays torch-free (``ofakd --help`` relies on it) and each subpackage imports when first named."""
    import subprocess
    import sys

    packages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")} - {"commands"}  # the CLI's own
    assert set(ofakd.SUBPACKAGES) == packages | {"evaluation"}
    done = subprocess.run([sys.executable, "-c", SUBPACKAGES_DRIVER], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "True True True", "ofakd.export.run_loading LiveTeacher CachedTeacher export_student DataConfig RunConfig"]


def test_every_engine_class_reads_in_one_sitting():
    """No class of the engine over 250 lines: the trainer orchestrates, each concern has a module of its own
    (setup, resume, saving, run_summary, loop, evaluate, ...)."""
    long = []
    for path in (PACKAGE / "engine").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 250:
                long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
