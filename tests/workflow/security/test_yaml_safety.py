"""YAML: alias bombs and unsafe tags are refused fast, in workflow files and data files."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from batchline.workflow import TaskError, WorkflowError, get_task
from batchline.workflow.safeyaml import UnsafeYAMLError, safe_load
from batchline.workflow.tasks import TaskConfig
from batchline.workflow.yamlfile import load_yaml


def bomb(depth: int, width: int = 9, key: str = "l") -> str:
    """A 'billion laughs' document: ``width ** depth`` leaves from a few hundred bytes."""
    lines = [f"{key}0: &{key}0 [{', '.join(['lol'] * width)}]"]
    for level in range(1, depth + 1):
        refs = ", ".join([f"*{key}{level - 1}"] * width)
        lines.append(f"{key}{level}: &{key}{level} [{refs}]")
    return "\n".join(lines) + "\n"


def read_yaml(tmp_path: Path, text: str) -> Any:
    (tmp_path / "data.yaml").write_text(text, encoding="utf-8")
    config = TaskConfig(
        name="load",
        type="file.read",
        inputs={"path": "data.yaml", "format": "yaml"},
        workspace=tmp_path,
        base_dir=tmp_path,
    )
    return get_task("file.read")(config)


@pytest.mark.parametrize("depth", [6, 9, 12, 30])
def test_alias_bombs_are_refused_without_building_them(tmp_path: Path, depth: int) -> None:
    text = bomb(depth)
    assert len(text) < 2000
    tracemalloc.start()
    try:
        with pytest.raises(WorkflowError, match=r"wf\.yaml:\d+: YAML aliases .* past 100,000"):
            load_yaml("name: x\n" + text, "wf.yaml")
        with pytest.raises(TaskError, match=r"step `load`: .*data\.yaml:\d+: YAML aliases"):
            read_yaml(tmp_path, text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20_000_000  # the 2.6 GB of before never happens


def test_the_workflow_bomb_is_refused_by_the_cli(write: Any, cli: Any) -> None:
    path = write("name: x\nsteps: [{name: a, task: echo}]\n" + bomb(9, key="b"))
    for command in ("validate", "run"):
        done = cli(command, str(path))
        assert done.returncode == 2
        assert "YAML aliases" in done.stderr
        assert "wf.yaml:" in done.stderr


def test_a_data_file_bomb_fails_its_step_and_writes_no_state(
    write: Any, cli: Any, tmp_path: Path
) -> None:
    (tmp_path / "data.yaml").write_text(bomb(7, key="d"), encoding="utf-8")
    path = write(
        "name: x\nsteps:\n"
        "  - {name: load, task: file.read, inputs: {path: data.yaml, format: yaml}}\n"
    )
    done = cli("run", str(path), "--format", "json")
    assert done.returncode == 1
    assert "YAML aliases" in json.loads(done.stdout)["message"]
    assert (tmp_path / ".batchline" / "state.db").stat().st_size < 1_000_000


def test_small_alias_use_still_works(tmp_path: Path) -> None:
    text = "base: &b {retries: 3, tags: [a, b]}\nfirst: *b\nsecond: {<<: *b, retries: 5}\n"
    assert read_yaml(tmp_path, text)["second"] == {"retries": 5, "tags": ["a", "b"]}
    assert load_yaml("name: x\n" + bomb(2), "wf.yaml").data["l2"][0][0] == ["lol"] * 9


@pytest.mark.parametrize(
    ("document", "tag", "line"),
    [
        ("a: 1\nb: !!python/tuple [1, 2]\n", "!!python/tuple", 2),
        (
            "a: !!python/object/apply:os.system ['touch PWNED']\n",
            "!!python/object/apply:os.system",
            1,
        ),
        ("a: 1\n\nb: !!python/name:os.system\n", "!!python/name:os.system", 3),
        ("- !custom {x: 1}\n", "!custom", 1),
        ("a: !!python/object:__main__.X {}\n", "!!python/object:__main__.X", 1),
        ("a:\n  b: !env HOME\n", "!env", 2),
    ],
)
def test_unsafe_tags_are_refused_naming_tag_and_line(
    tmp_path: Path, document: str, tag: str, line: int
) -> None:
    with pytest.raises(UnsafeYAMLError, match=rf":{line}: the YAML tag `{tag}` is not allowed"):
        safe_load(document, "d.yaml")
    with pytest.raises(TaskError, match=rf"data\.yaml:{line}: the YAML tag `{tag}`"):
        read_yaml(tmp_path, document)
    prefix = "name: x\nsteps:\n" if document.startswith("-") else "name: x\n"
    shifted = line + prefix.count("\n")
    with pytest.raises(WorkflowError, match=rf"wf\.yaml:{shifted}: the YAML tag `{tag}`"):
        load_yaml(prefix + document, "wf.yaml")
    assert not (tmp_path / "PWNED").exists()


def test_recursive_and_too_deep_documents_are_refused() -> None:
    with pytest.raises(UnsafeYAMLError, match="refers to the node containing it"):
        safe_load("a: &a [1, *a]\n", "d.yaml")
    with pytest.raises(UnsafeYAMLError, match=r"d\.yaml:1: the YAML is nested more than 200"):
        safe_load("[" * 250 + "]" * 250, "d.yaml")
