"""yaml-workflow's dialect keeps every safety guarantee: its code tasks, platform commands,
conditions, ``{% include %}``, template files and YAML readers are no way around them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchline.workflow import TaskError, TemplateError, WorkflowError, get_task, load_workflow
from batchline.workflow.pycode import CODE_TASKS
from batchline.workflow.stepinputs import render_inputs
from batchline.workflow.tasks import TaskConfig
from batchline.workflow.templating import Namespace, render_command

CANARY = "PWNED"
ATTACK = f"'; open('{CANARY}', 'w').write('x'); x = '"
SHELL_ATTACKS = ["a; touch PWNED", "$(touch PWNED)", "x'; touch PWNED; echo '", '"; touch PWNED; "']


def test_python_code_is_a_code_task() -> None:
    assert {"python", "python_code"} <= CODE_TASKS


def test_templated_python_code_is_refused_at_validate(write: Any, cli: Any, tmp_path: Path) -> None:
    path = write(
        "name: py\nparams: {name: {default: x}}\nsteps:\n"
        "  - name: greet\n    task: python_code\n    inputs:\n"
        "      code: \"result = '{{ args.name }}'\"\n"
    )
    with pytest.raises(WorkflowError, match="values never become code"):
        load_workflow(path)
    for args in (("validate", str(path)), ("run", str(path), f"name={ATTACK}")):
        done = cli(*args)
        assert done.returncode == 2, done.stderr
        assert "wf.yaml:7:" in done.stderr
    assert not (tmp_path / CANARY).exists()


def test_python_code_task_itself_refuses_templated_code(tmp_path: Path) -> None:
    config = TaskConfig(
        name="s",
        type="python_code",
        inputs={"code": f"result = '{ATTACK}'"},
        workspace=tmp_path,
        base_dir=tmp_path,
        raw_inputs={"code": "result = '{{ args.name }}'"},
    )
    with pytest.raises(TaskError, match=r"step `s`: `code` holds a template"):
        get_task("python_code")(config)
    assert not (tmp_path / CANARY).exists()


def test_python_code_gets_values_as_variables_and_keeps_result_variable(
    write: Any, cli: Any, tmp_path: Path
) -> None:
    path = write(
        "name: py\nparams: {name: {default: x}}\nsteps:\n"
        "  - name: greet\n    task: python_code\n    inputs:\n"
        '      who: "{{ args.name }}"\n'
        "      result_variable: out\n"
        "      code: \"out = who + '|' + args['name']\"\n"
    )
    done = cli("run", str(path), f"name={ATTACK}", "--format", "json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["steps"]["greet"]["result"] == f"{ATTACK}|{ATTACK}"
    assert not (tmp_path / CANARY).exists()


@pytest.mark.parametrize("payload", SHELL_ATTACKS)
@pytest.mark.parametrize("style", ["{{ x }}", "'{{ x }}'", '"{{ x }}"'])
def test_platform_commands_are_escaped_like_string_commands(
    tmp_path: Path, style: str, payload: str
) -> None:
    command = {"unix": f"echo {style}", "windows": f"echo {style}"}
    rendered = render_inputs("shell", {"command": command}, {"x": payload}, step="s")
    assert rendered["command"]["unix"] != f"echo {payload}"
    config = TaskConfig(
        name="s",
        type="shell",
        inputs=rendered,
        workspace=tmp_path,
        base_dir=tmp_path,
    )
    result = get_task("shell")(config)
    assert result["stdout"] == payload + "\n"
    assert not (tmp_path / CANARY).exists()


def test_condition_never_evaluates_rendered_values(write: Any, cli: Any, tmp_path: Path) -> None:
    # yaml-workflow's `'{{ x }}' == 'true'`: the rendered text is compared with `True`,
    # never parsed again, so no value can turn it into an expression.
    path = write(
        "name: cond\nparams: {x: {default: 'no'}}\nsteps:\n"
        "  - name: quoted\n    task: shell\n"
        "    condition: \"'{{ args.x }}' == 'true'\"\n"
        "    inputs: {command: touch quoted.ran}\n"
        "  - name: bare\n    task: shell\n"
        '    condition: "{{ args.x }}"\n'
        "    inputs: {command: touch bare.ran}\n"
    )
    for value in ["true' == 'true", "{{ 1 == 1 }}", "True == True", "__import__('os')"]:
        done = cli("run", str(path), f"x={value}")
        assert done.returncode == 0, done.stderr
        assert not (tmp_path / "quoted.ran").exists()
        assert not (tmp_path / "bare.ran").exists()
    done = cli("run", str(path), "x=True")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "bare.ran").exists()  # the value is data: the text `True` runs it


def test_included_templates_render_in_the_immutable_sandbox(
    write: Any, cli: Any, tmp_path: Path
) -> None:
    (tmp_path / "evil.j2").write_text("{{ env.update({'HOME': '/tmp/evil'}) }}", encoding="utf-8")
    (tmp_path / "big.j2").write_text("{{ 'a' * 300000000 }}", encoding="utf-8")
    path = write(
        "name: inc\nsettings: {max_render_size: 1000}\nsteps:\n"
        "  - name: mutate\n    task: template\n    on_error: continue\n"
        "    inputs: {template: \"{% include 'evil.j2' %}\"}\n"
        "  - name: huge\n    task: template\n    on_error: continue\n"
        "    inputs: {template: \"{% include 'big.j2' %}\"}\n"
        "  - name: home\n    task: shell\n"
        '    inputs: {command: "echo {{ env.HOME }}"}\n'
    )
    done = cli("run", str(path), "--format", "json")
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert steps["mutate"]["status"] == "failed"
    assert "cannot change" in steps["mutate"]["error"]
    assert steps["huge"]["status"] == "failed"
    assert "over the limit of 1,000" in steps["huge"]["error"]
    assert steps["home"]["result"]["stdout"].strip() != "/tmp/evil"


def test_template_file_keeps_file_line_errors_and_the_size_limit(tmp_path: Path) -> None:
    (tmp_path / "t.j2").write_text("ok\n{{ 'a' * 5000 }}\n", encoding="utf-8")
    config = TaskConfig(
        name="report",
        type="template",
        inputs={"template_file": "t.j2"},
        workspace=tmp_path,
        base_dir=tmp_path,
        context={"args": Namespace()},
        settings={"max_render_size": 100},
    )
    with pytest.raises(TemplateError, match="over the limit of 100"):
        get_task("template")(config)
    (tmp_path / "t.j2").write_text("ok\n{{ args.nope }}\n", encoding="utf-8")
    with pytest.raises(TemplateError, match=r"t\.j2:2 `\{\{ args\.nope \}\}`"):
        get_task("template")(config)


def test_yaml_readers_refuse_bombs_and_tags_and_name_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "tag.yaml").write_text("a: !!python/object/apply:os.system [x]\n", "utf-8")
    (tmp_path / "bad.yaml").write_text("a: 1\nb: [2\n", encoding="utf-8")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(6)
    )
    (tmp_path / "bomb.yaml").write_text(bomb, encoding="utf-8")
    for task, key in (("file.read", "path"), ("read_yaml", "file")):
        inputs = {key: "tag.yaml"}
        if task == "file.read":
            inputs["format"] = "yaml"

        def read(name: str, task: str = task, inputs: dict[str, Any] = inputs) -> Any:
            config = TaskConfig(
                name="load",
                type=task,
                inputs={**inputs, next(iter(inputs)): name},
                workspace=tmp_path,
                base_dir=tmp_path,
            )
            return get_task(task)(config)

        with pytest.raises(TaskError, match="python/object"):
            read("tag.yaml")
        with pytest.raises(TaskError, match=r"alias|node"):
            read("bomb.yaml")
        with pytest.raises(TaskError, match=r"bad\.yaml.*line 3|bad\.yaml:3"):
            read("bad.yaml")


@pytest.mark.parametrize(
    ("task", "inputs"),
    [
        ("write_file", {"file": "../escape.txt", "content": "x"}),
        ("read_file", {"file": "/etc/hostname"}),
        ("write_json", {"file": "../escape.json", "data": {}}),
        ("copy_file", {"source": "/etc/hostname", "destination": "copy.txt"}),
    ],
)
def test_yaml_workflow_file_tasks_are_confined(
    tmp_path: Path, task: str, inputs: dict[str, Any]
) -> None:
    base = tmp_path / "project"
    base.mkdir()
    config = TaskConfig(
        name="s",
        type=task,
        inputs=inputs,
        workspace=base / ".batchline",
        base_dir=base,
        settings={"confine_paths": True},
    )
    with pytest.raises(TaskError, match="outside"):
        get_task(task)(config)
    assert not (tmp_path / "escape.txt").exists()
    assert not (tmp_path / "escape.json").exists()


def test_render_command_renders_each_platform() -> None:
    rendered = render_command({"unix": "echo {{ x }}"}, {"x": "a b"}, step="s")
    assert rendered == {"unix": "echo 'a b'"}
