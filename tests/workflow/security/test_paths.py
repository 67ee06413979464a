"""Path confinement: with confine_paths on, file tasks and outputs stay in the workflow folders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from batchline.workflow import TaskError, get_task
from batchline.workflow.tasks import TaskConfig


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    base = tmp_path / "project"
    workspace = base / ".batchline"
    outside = tmp_path / "outside"
    for folder in (base, workspace, outside):
        folder.mkdir(parents=True)
    (outside / "secret.txt").write_text("top secret", encoding="utf-8")
    (base / "escape").symlink_to(outside)
    (base / "link.txt").symlink_to(outside / "secret.txt")
    (base / "data.txt").write_text("fine", encoding="utf-8")
    return base, workspace, outside


def config(
    base: Path, workspace: Path, task: str, confine: bool = True, **inputs: Any
) -> TaskConfig:
    return TaskConfig(
        name="files",
        type=task,
        inputs=inputs,
        workspace=workspace,
        base_dir=base,
        settings={"confine_paths": confine},
    )


ESCAPES = [
    "../outside/secret.txt",
    "sub/../../outside/secret.txt",
    "{outside}/secret.txt",
    "escape/secret.txt",
    "link.txt",
    "/etc/passwd",
    "~/.bashrc",
]


@pytest.mark.parametrize("given", ESCAPES)
@pytest.mark.parametrize(
    ("task", "extra"),
    [
        ("file.read", {}),
        ("file.write", {"content": "pwned"}),
        ("file.append", {"content": "pwned"}),
        ("template", {"template": "pwned", "output": None}),
        ("template", {"template_file": None}),
        ("shell", {"command": "touch pwned", "cwd": None}),
    ],
)
def test_escapes_are_refused_when_confined(
    folders: tuple[Path, Path, Path], given: str, task: str, extra: dict[str, Any]
) -> None:
    base, workspace, outside = folders
    path = given.format(outside=outside)
    inputs = {key: (path if value is None else value) for key, value in extra.items()}
    if task.startswith("file."):
        inputs["path"] = path
    with pytest.raises(TaskError) as caught:
        get_task(task)(config(base, workspace, task, **inputs))
    message = str(caught.value)
    assert "step `files`" in message
    assert f"`{path}`" in message
    assert "outside the workflow's folders" in message
    assert "confine_paths" in message
    assert (outside / "secret.txt").read_text() == "top secret"
    assert not (outside / "pwned").exists()
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_paths_inside_still_work_when_confined(folders: tuple[Path, Path, Path]) -> None:
    base, workspace, _ = folders
    assert get_task("file.read")(config(base, workspace, "file.read", path="data.txt")) == "fine"
    get_task("file.write")(config(base, workspace, "file.write", path="out/new.txt", content="x"))
    get_task("file.write")(
        config(base, workspace, "file.write", path=str(workspace / "w.txt"), content="y")
    )
    get_task("template")(config(base, workspace, "template", template="t", output="sub/./t.txt"))
    assert (base / "out" / "new.txt").read_text() == "x"
    assert (workspace / "w.txt").read_text() == "y"
    assert (base / "sub" / "t.txt").read_text() == "t"


def test_confinement_is_off_by_default(folders: tuple[Path, Path, Path]) -> None:
    base, workspace, _ = folders
    read = get_task("file.read")(
        config(base, workspace, "file.read", confine=False, path="../outside/secret.txt")
    )
    assert read == "top secret"


@pytest.mark.parametrize("how", ["setting", "flag"])
def test_workflow_confinement_from_the_setting_or_the_flag(
    write: Any, cli: Any, tmp_path: Path, how: str
) -> None:
    (tmp_path.parent / f"victim-{how}.txt").write_text("keep", encoding="utf-8")
    settings = "settings: {confine_paths: true}\n" if how == "setting" else ""
    path = write(
        f"""
name: paths
{settings}params: {{target: {{default: "../victim-{how}.txt"}}}}
steps:
  - name: write
    task: file.write
    inputs: {{path: "{{{{ args.target }}}}", content: pwned}}
"""
    )
    flags = ["--confine-paths"] if how == "flag" else []
    done = cli("run", str(path), "--format", "json", *flags)
    assert done.returncode == 1, done.stdout
    error = json.loads(done.stdout)["steps"]["write"]["error"]
    assert "outside the workflow's folders" in error
    assert (tmp_path.parent / f"victim-{how}.txt").read_text() == "keep"
    os.remove(tmp_path.parent / f"victim-{how}.txt")
