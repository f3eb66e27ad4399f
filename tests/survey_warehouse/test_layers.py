"""The package's folders follow the data flow, and imports only go down: a stage may use the stages before it and
the modules every stage stands on, never a stage after it. Every import counts, also those inside functions (the
package imports Airflow, dbt and Great Expectations where they are used, and its own modules as often)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = "survey_warehouse"
SOURCE = Path(__file__).resolve().parents[2] / "src" / PACKAGE

# a string that is a dotted name of one of the package's modules (or a name in one): an import by name
NAMED_MODULE = re.compile(rf"({PACKAGE}(?:\.[a-z_]+)+?)(?:[.:][A-Za-z_][\w.]*)?")

BY_NAME = frozenset({"import_module", "__import__", "resolve_name", "import_string"})

# bottom to top; a module may import from its own layer and the layers below it
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    # what every stage stands on: the errors, the settings and secrets, the warehouse database
    ("ground", frozenset({PACKAGE, "errors", "settings", "secrets", "warehouse"})),
    ("intake", frozenset({"intake"})),  # what a delivered file is and how it is read
    ("raw", frozenset({"raw"})),  # the loader, the load registry, the builds
    ("drafting", frozenset({"drafting"})),  # a new wave's spec and codebook rows, proposed from its file
    ("quality", frozenset({"quality"})),  # the gates
    ("publishing", frozenset({"publishing"})),  # the published marts, their exports, their asset
    ("operations", frozenset({"operations"})),  # the inbox, the summary, the causes of failures
    ("orchestration", frozenset({"orchestration"})),  # the DAGs' steps and callbacks, running them
    ("command line", frozenset({"cli"})),
    # old module paths an existing deployment still names (Airflow keeps the inbox trigger's classpath in its
    # database): each re-exports from where its code now is
    ("kept for old references", frozenset({"inbox_trigger"})),
)


def layer_of(module: str) -> int:
    """The layer of a dotted module name of the package (its first part below the package names it)."""
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else PACKAGE
    for rank, (_name, members) in enumerate(LAYERS):
        if head in members:
            return rank
    raise LookupError(f"{module} is in no layer: add its folder to LAYERS in {Path(__file__).name}")


def module_name(path: Path) -> str:
    relative = path.relative_to(SOURCE.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def imported(source: str, module: str, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, module) of every import of the package's own modules in `source`, anywhere in it; an import by name
    (`importlib.import_module("survey_warehouse.cli")`, `__import__`, `pkgutil.resolve_name`, Airflow's
    `import_string` of a classpath) counts as one."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _called(node) in BY_NAME and node.args:
            first = node.args[0]
            named = (
                NAMED_MODULE.fullmatch(first.value.strip())
                if isinstance(first, ast.Constant) and isinstance(first.value, str)
                else None
            )
            if named:
                found.append((node.lineno, named.group(1)))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == PACKAGE]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's own package upwards
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            if target == PACKAGE:  # from survey_warehouse import intake, cli: each name is a module
                found += [(node.lineno, f"{PACKAGE}.{a.name}") for a in node.names]
            else:
                found.append((node.lineno, target))
    return found


def _called(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def upward_imports(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports in `source` (the text of `module`) of a layer above the module's own."""
    own = layer_of(module)
    return [
        f"{module}:{line} imports {target} ({LAYERS[layer_of(target)][0]} is above {LAYERS[own][0]})"
        for line, target in imported(source, module, is_package)
        if layer_of(target) > own
    ]


def package_modules() -> list[Path]:
    return sorted(SOURCE.rglob("*.py"))


def test_every_module_is_in_a_layer() -> None:
    for path in package_modules():
        layer_of(module_name(path))  # raises for a folder no layer names


def test_imports_only_go_down() -> None:
    found = [
        problem
        for path in package_modules()
        for problem in upward_imports(path.read_text(), module_name(path), path.name == "__init__.py")
    ]
    assert not found, "lower stages must not import higher ones:\n" + "\n".join(found)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("survey_warehouse.raw.load", "from survey_warehouse.orchestration import pipeline\n"),
        ("survey_warehouse.intake.grid", "def f():\n    from survey_warehouse.raw.registry import current_load\n"),
        ("survey_warehouse.settings", "import survey_warehouse.quality.batches\n"),
        ("survey_warehouse.publishing.publish", "from survey_warehouse import cli\n"),
        ("survey_warehouse.operations.summary", "from ..orchestration import notify\n"),
        (
            "survey_warehouse.raw.load",
            "import importlib\nimportlib.import_module('survey_warehouse.orchestration.pipeline')\n",
        ),
        ("survey_warehouse.raw.load", "__import__('survey_warehouse.cli')\n"),
        (
            "survey_warehouse.intake.grid",
            "import pkgutil\npkgutil.resolve_name('survey_warehouse.raw.load:load_wave')\n",
        ),
        (
            "survey_warehouse.quality.suites",
            "import_string('survey_warehouse.operations.inbox_trigger.InboxTrigger')\n",
        ),
    ],
)
def test_an_upward_import_is_found(module: str, source: str) -> None:
    assert upward_imports(source, module)


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("survey_warehouse.orchestration.pipeline", "from survey_warehouse.raw import load, registry\n"),
        ("survey_warehouse.raw.builds", "from survey_warehouse.raw.registry import fail_load\n"),
        ("survey_warehouse.cli", "from survey_warehouse.orchestration.runner import run_waves\n"),
        ("survey_warehouse.quality.batches", "from survey_warehouse.settings import Paths\n"),
    ],
)
def test_a_downward_import_is_allowed(module: str, source: str) -> None:
    assert not upward_imports(source, module)
