"""Layer rules that import-linter cannot express, checked on the source's AST.

Front doors (pipeline/, workflow/, context/) use the engine and the state stores through
their public package names only: ``from batchline.engine import ...`` and
``from batchline.state import ...``, never a module inside them. The other layer rules
are import-linter contracts in pyproject.toml (``make imports``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import batchline

PACKAGE = Path(batchline.__file__).resolve().parent
FRONT_DOORS = ("pipeline", "workflow", "context")
PUBLIC_ONLY = ("batchline.engine", "batchline.state")


def private_imports(source: str) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of a module inside engine/ or state/."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module in PUBLIC_ONLY:  # `from batchline.engine import core` is a module
                names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            for package in PUBLIC_ONLY:
                if name.startswith(package + ".") and _is_module(name):
                    found.append((node.lineno, name))
    return found


def _is_module(name: str) -> bool:
    parts = name.split(".")[1:]
    path = PACKAGE.joinpath(*parts)
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


@pytest.mark.parametrize("door", FRONT_DOORS)
def test_front_doors_use_only_the_public_engine_and_state_packages(door: str) -> None:
    problems = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports `{module}`"
        for path in sorted((PACKAGE / door).rglob("*.py"))
        for line, module in private_imports(path.read_text(encoding="utf-8"))
    ]
    assert not problems, (
        "front doors must import `batchline.engine` / `batchline.state` by package name "
        "(export what is missing from the package's __init__):\n" + "\n".join(problems)
    )


def test_the_check_catches_private_imports() -> None:
    source = (
        "from batchline.engine.core import RunCore\n"
        "import batchline.state.sqlite\n"
        "from batchline.engine import session\n"
        "from batchline.engine import RunSession\n"
        "from batchline.state import SQLiteStateStore\n"
    )
    assert [module for _, module in private_imports(source)] == [
        "batchline.engine.core",
        "batchline.state.sqlite",
        "batchline.engine.session",
    ]
