"""Every code block of README.md and docs/*.md runs, as a newcomer would copy it.

Blocks are found by `sybil` (its Markdown lexer), one test per block, in page order:

- ``python``: executed in a fresh namespace (a block must define what it uses), in a
  temporary folder shared by the blocks of its page (files a block writes are there for
  the next one, as for a reader working through the page in one folder).
- ``bash``: run by ``bash -euo pipefail`` as a real subprocess in that
  folder, with ``examples/`` linked in and the ``batchline`` command on ``PATH`` (this
  checkout's code). Lines of ``make`` and ``pip install`` are checked, not run: ``make
  TARGET`` must be a target of the Makefile, ``pip install -e ".[EXTRA]"`` an extra of
  pyproject.toml (they would build a virtual environment).
- A shell block naming the docs' example database (``postgresql://batch@db.internal...``)
  runs against a local PostgreSQL server instead (skipped, saying why, without one).
- ``console``: each ``$ command`` runs the same way; the lines under it are what it
  prints, checked against its output.
- ``yaml`` with a top-level ``name:`` and ``steps:``: a workflow, run by ``batchline run``
  (which validates it first; exit 0 expected), with its declared ``secrets`` set
  to a dummy value; one with required params is validated only (the thumbnails workflow is
  the shipped file, which the pages run with its params). Other YAML must parse.
- ``text`` (output and sample messages) and the repository layout are not code.

A block that needs Ray skips, with the reason, only where ``ray`` is not importable.
Every other fence language is an error, so no block escapes the check.
"""

from __future__ import annotations

import gc
import logging
import os
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sybil import Example, Sybil
from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_CODE = {"text", ""}  # sample output, messages, the layout tree
SHELL = {"bash", "console"}
KNOWN = {"python", "yaml", *SHELL, *NOT_CODE}
FENCE = re.compile(r"^```(\S*)", re.MULTILINE)


PLACEHOLDER_DSN = "postgresql://batch@db.internal:5432/runs"  # the docs' example database


def _shell_evaluator(example: Example) -> None:
    where = f"{example.path}:{example.line}"
    script = str(example.parsed)
    dsn = example.namespace.get("__postgres__")
    if dsn:
        script = script.replace(PLACEHOLDER_DSN, shlex.quote(dsn))
    _run_shell(script, example.namespace["__folder__"], where)


def _console_evaluator(example: Example) -> None:
    """``$ command`` lines run one by one; the lines under a command are what it prints:
    each must match a line of its stdout or stderr (``...`` matches anything). It must
    exit 0, or with N when a line under it reads ``(exit status N)``."""
    where = f"{example.path}:{example.line}"
    folder: Path = example.namespace["__folder__"]
    steps: list[tuple[str, list[str]]] = []
    for line in str(example.parsed).splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif line.strip():
            assert steps, f"{where}: output before any `$ ` command: {line!r}"
            steps[-1][1].append(line.strip())
    assert steps, f"{where}: a console block without `$ ` commands"
    for command, printed in steps:
        status = [int(m.group(1)) for w in printed if (m := _STATUS.fullmatch(w))]
        output = _run_shell(command, folder, where, status[0] if status else 0)
        lines = output.splitlines()
        for want in (w for w in printed if not _STATUS.fullmatch(w)):
            pattern = ".*".join(re.escape(part) for part in want.split("..."))
            assert any(re.search(pattern, got) for got in lines), (
                f"{where}: `{command}` did not print {want!r}; it printed:\n{output[-3000:]}"
            )


def _yaml_evaluator(example: Example) -> None:
    text = str(example.parsed)
    data = yaml.safe_load(text)
    if not (isinstance(data, dict) and "name" in data and "steps" in data):
        return  # a fragment (settings, a data file): it parses, which is all it claims
    folder: Path = example.namespace["__folder__"]
    path = folder / f"{data['name']}.yaml"
    path.write_text(text, encoding="utf-8")
    where = f"{example.path}:{example.line}"
    params = data.get("params") or {}
    required = [
        name
        for name, spec in params.items()
        if isinstance(spec, dict) and spec.get("required") and "default" not in spec
    ]
    if required:  # it needs values from the reader: validated here, run where it is shipped
        _run_shell(f"batchline validate {path.name}", folder, where)
        return
    secrets = " ".join(f"{name}=docs-test-secret" for name in data.get("secrets") or [])
    _run_shell(f"{secrets} batchline run {path.name} -q", folder, where)  # validates first


SYBIL = Sybil(
    parsers=[
        PythonCodeBlockParser(),
        CodeBlockParser("bash", _shell_evaluator),
        CodeBlockParser("console", _console_evaluator),
        CodeBlockParser("yaml", _yaml_evaluator),
    ]
)


def _examples() -> Iterator[Any]:
    for page in PAGES:
        document = SYBIL.parse(page)
        for example in document:
            name = f"{page.relative_to(ROOT)}:{example.line}"
            yield pytest.param(page, example, id=name)


EXAMPLES = list(_examples())


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """One working folder per page, with ``examples/`` and a ``batchline`` command in it."""
    made: dict[Path, Path] = {}
    for page in PAGES:
        folder = tmp_path_factory.mktemp(page.stem.lower())
        (folder / "examples").symlink_to(ROOT / "examples")
        made[page] = folder
    return made


@pytest.fixture(scope="module")
def shell_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH whose ``batchline`` runs this checkout with this interpreter."""
    bin_dir = tmp_path_factory.mktemp("bin")
    command = bin_dir / "batchline"
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m batchline.cli "$@"\n')
    command.chmod(0o755)
    python = bin_dir / "python"  # a script, not a link: a link would lose the venv
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"


_SHELL_PRELUDE = r"""
make() {  # checked, not run: the target must exist in the Makefile
  for target in "$@"; do
    grep -qE "^${target}:" "$BATCHLINE_ROOT/Makefile" \
      || { echo "no make target $target" >&2; return 1; }
  done
}
pip() {  # checked, not run: an -e install of this checkout with existing extras
  python "$BATCHLINE_ROOT/tests/test_docs.py" --check-pip "$@"
}
"""


_STATUS = re.compile(r"\(exit status (\d+)\)")


def _run_shell(script: str, folder: Path, where: str, status: int = 0) -> str:
    env = {**os.environ, "BATCHLINE_ROOT": str(ROOT), "PATH": _SHELL_PATH[0]}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", _SHELL_PRELUDE + script],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == status, (
        f"{where}: the block exited with {done.returncode}, not {status}\n--- block:\n{script}\n"
        f"--- stdout:\n{done.stdout[-3000:]}\n--- stderr:\n{done.stderr[-3000:]}"
    )
    return done.stdout + done.stderr


_SHELL_PATH = [os.environ.get("PATH", "")]  # set by the shell_path fixture


def _needs_ray(source: str) -> bool:
    return bool(re.search(r"backend\s*[=:]\s*['\"]?ray|RayBackend|--backend ray|ray start", source))


@pytest.mark.parametrize(("page", "example"), EXAMPLES)
def test_doc_block_runs(
    page: Path,
    example: Example,
    folders: dict[Path, Path],
    shell_path: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    request: pytest.FixtureRequest,
) -> None:
    source = str(example.parsed)
    if _needs_ray(source):
        pytest.importorskip("ray", reason="this block runs on Ray; `pip install -e .[ray]`")
    _SHELL_PATH[0] = shell_path
    if PLACEHOLDER_DSN in source and example.region.evaluator is _shell_evaluator:
        postgres = request.getfixturevalue("postgres_dsn")  # skips, saying why, without it
    else:
        postgres = None
    folder = folders[page]
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    example.namespace.clear()  # every block stands alone: no names from the one before
    example.namespace["__folder__"] = folder
    example.namespace["__name__"] = "__main__"
    example.namespace["__postgres__"] = postgres
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        example.evaluate()
        example.namespace.clear()
        gc.collect()  # an HTTP session left open says so when it is collected
    unclosed = [r.getMessage() for r in caplog.records if "Unclosed" in r.getMessage()]
    assert not unclosed, f"{page.name}:{example.line} leaves connections open: {unclosed}"


def test_every_block_is_checked() -> None:
    """Each fence has a language this file runs (or declares not to be code), and the
    count of blocks run matches the count of fences holding code."""
    fences = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        opening = FENCE.findall(text)[::2]  # every other fence closes a block
        unknown = sorted({lang for lang in opening if lang not in KNOWN})
        assert not unknown, f"{page.name}: fences of unknown language {unknown}"
        fences += [lang for lang in opening if lang not in NOT_CODE]
    assert len(EXAMPLES) == len(fences)
    assert len(EXAMPLES) >= 45


def _check_pip(args: list[str]) -> int:
    """``pip install -e ".[a,b]"`` (or ``.``): the extras exist in pyproject.toml."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    targets = [a for a in args if a not in ("install", "-e", "--editable", "-q", "--quiet")]
    for target in targets:
        match = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", target)
        if match is None:
            print(
                f"pip {' '.join(args)}: only installs of this checkout are shown", file=sys.stderr
            )
            return 1
        missing = [e for e in (match.group(1) or "").split(",") if e and e not in extras]
        if missing:
            print(f"no extra {missing} in pyproject.toml", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--check-pip"]:
    sys.exit(_check_pip(sys.argv[2:]))


@pytest.mark.parametrize(
    ("page", "marker", "resumed"),
    [
        ("README.md", 'run_id="companies-nov"', "result.stats.resumed == 1000"),
        (
            "docs/context.md",
            'run_id="refactor-1"',
            "sorted(answers) == ['add-logout', 'fix-login']",
        ),
    ],
)
def test_a_durable_example_run_again_resumes(
    page: str, marker: str, resumed: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pages say these examples are durable: run again in the same folder, the same code
    resumes (the README's run loads every result; the context store's entries are not added
    twice, so no `DuplicateEntryError`)."""
    path = ROOT / page
    block = next(e for e in SYBIL.parse(path) if marker in str(e.parsed))
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        namespace: dict[str, Any] = {"__name__": "__main__"}
        exec(compile(str(block.parsed), f"{path}:{block.line}", "exec"), namespace)  # noqa: S102
    assert eval(resumed, namespace), resumed  # noqa: S307 - a fixed expression of this file


def test_the_printed_thumbnails_workflow_is_the_shipped_file() -> None:
    page = (ROOT / "docs" / "workflows.md").read_text(encoding="utf-8")
    shipped = (ROOT / "examples" / "workflows" / "thumbnails.yaml").read_text(encoding="utf-8")
    assert f"```yaml\n{shipped}```" in page
