"""The folders are layers: each imports only those below it, and each names its job.

domain ← contract ← log ← projections ← reactors ← app ← consumers ← api ← cli,
with the simulation beside them, imported by no product layer. Reactors may read a
view (the leak alerts read the loop view), so views sit below reactors; the API shows
the Kafka consumers' lag, so consumers sit below the API; the CLI serves the API.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["domain", "contract", "log", "projections", "reactors", "app", "consumers", "api", "cli"]
# Beside the product: may import any product layer, imported by none of them except the CLI's demo.
BESIDE = {"simulation": {"cli"}}
PACKAGES = ORDER + list(BESIDE)


def _imported_layers(path: Path) -> set[tuple[str, int]]:
    """Every `closedloop.<layer>` a module imports, lazily inside functions included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "closedloop":
                names = [f"closedloop.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "closedloop" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.fast
@pytest.mark.parametrize("package", PACKAGES)
def test_a_layer_imports_only_the_layers_below_it(package: str) -> None:
    wrong = []
    for path in _modules(package):
        for layer, line in _imported_layers(path):
            if layer == package:
                continue
            if layer in BESIDE:
                allowed = package in BESIDE[layer]
            elif package in BESIDE:
                allowed = layer in ORDER
            else:
                allowed = layer in ORDER and ORDER.index(layer) < ORDER.index(package)
            if not allowed:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports closedloop.{layer}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


@pytest.mark.fast
def test_the_layer_check_catches_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from closedloop.app.engine import Engine\n", encoding="utf-8")
    assert _imported_layers(module) == {("app", 2)}


@pytest.mark.fast
@pytest.mark.parametrize("package", PACKAGES + ["closedloop"])
def test_each_package_names_its_job_in_one_sentence(package: str) -> None:
    init = ROOT / package / "__init__.py"
    doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
    assert doc, f"{package}/__init__.py has no docstring naming its job"
    first = doc.strip().splitlines()[0]
    assert first.endswith("."), f"{package}: the job should be one sentence: {first!r}"
    assert len(doc.strip().splitlines()) == 1, f"{package}: one sentence, not a page"


@pytest.mark.fast
def test_the_old_grab_bag_holds_nothing_but_the_namespace() -> None:
    assert sorted(p.name for p in (ROOT / "closedloop").glob("*.py")) == ["__init__.py"]
