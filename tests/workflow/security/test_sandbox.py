"""Templates: namespaces are immutable, and no template can build an oversized value."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from batchline.workflow import TemplateError, render
from batchline.workflow.templating import Namespace, render_command

NS: dict[str, Any] = {
    "args": Namespace(name="x", tags=["a"]),
    "env": Namespace(HOME="/home/me"),
    "steps": Namespace(load=Namespace(result=[1, 2], status="completed", error=None)),
    "workflow": Namespace(name="wf"),
    "batch": Namespace(item={"id": 1, "tags": ["t"]}, index=0),
}


@pytest.mark.parametrize(
    "template",
    [
        "{{ env.update({'HOME': '/tmp/evil'}) }}",
        "{{ env.__setitem__('HOME', '/tmp/evil') }}",
        "{{ env.setdefault('NEW', 'x') }}",
        "{{ env.pop('HOME') }}",
        "{{ env.clear() }}",
        "{{ args.tags.append('evil') }}",
        "{{ args.tags.extend(['evil']) }}",
        "{{ steps.load.result.insert(0, 9) }}",
        "{{ steps.load.update(status='failed') }}",
        "{{ batch.item.update(id=2) }}",
        "{{ batch.item.tags.pop() }}",
        "{% set _ = env.update(HOME='/tmp/evil') %}",
        "{{ workflow.popitem() }}",
        "{{ args.__dict__.update(name='y') }}",
    ],
)
def test_namespace_mutations_are_template_errors_naming_the_step(template: str) -> None:
    before = json.dumps(NS, sort_keys=True, default=str)
    with pytest.raises(TemplateError) as caught:
        render(template, NS, step="deploy", input_key="command")
    assert "step `deploy`" in str(caught.value)
    assert caught.value.step == "deploy"
    assert json.dumps(NS, sort_keys=True, default=str) == before
    assert NS["env"].HOME == "/home/me"


def test_a_mutation_cannot_reach_a_later_shell_step(write: Any, cli: Any) -> None:
    path = write(
        """
name: mutate
env: {TARGET: safe}
steps:
  - name: evil
    task: echo
    on_error: {action: continue}
    inputs: {value: "{{ env.update({'TARGET': 'evil'}) }}"}
  - name: show
    task: shell
    inputs: {command: "printf '%s' \\"$TARGET\\" {{ env.TARGET }}"}
"""
    )
    done = cli("run", str(path), "--format", "json")
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert steps["evil"]["status"] == "failed"
    assert "step `evil`" in steps["evil"]["error"]
    assert "read-only" in steps["evil"]["error"]
    assert steps["show"]["result"]["stdout"] == "safesafe"


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'a' * 300000000 }}",
        "{{ 300000000 * 'a' }}",
        "{{ [0] * 300000000 }}",
        "{{ ('a' * 4000000) + ('b' * 4000000) }}",
        "{{ '%300000000s' % 'x' }}",
        "{{ '%0300000000d' | format(1) }}",
        "{{ '{:>300000000}'.format(1) }}",
        "{{ 'x'.ljust(300000000) }}",
        "{{ 'x' | center(300000000) }}",
        "{{ ('a' * 1000000) | replace('a', 'aaaaaaaaaa') }}",
        "{{ ('a' * 1000000).replace('a', 'aaaaaaaaaa') }}",
        "{{ 9 ** 999999999 }}",
        "{{ (10 ** 1000) ** 1000 }}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
        "{% set big = 'a' * 1000000 %}{% for i in range(1000) %}{{ big }}{% endfor %}",
        "{% set big = 'a' * 1000000 %}{% set x %}{% for i in range(1000) %}{{ big }}"
        "{% endfor %}{% endset %}{{ x | length }}",
        "{{ (['a' * 1000000] * 100) | join }}",
        "{{ (['a' * 1000000] * 10) | join('-' * 1000000) }}",
        "{{ ('a\n' * 1000000) | indent(1000) }}",
    ],
)
def test_oversized_renderings_fail_fast_naming_step_and_input(template: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(TemplateError) as caught:
            render(template, NS, step="explode", input_key="value")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert "step `explode`, input `value`" in message
    assert "over the limit of 5,000,000" in message
    assert "max_render_size" in message
    assert peak < 30_000_000  # never the 300 MB (or more) the template asks for


def test_oversized_shell_commands_and_items_fail_the_same_way() -> None:
    with pytest.raises(TemplateError, match=r"step `s`, input `command`.*over the limit"):
        render_command("echo {{ 'a' * 300000000 }}", NS, step="s")
    huge = {"batch": {"item": "x" * 6_000_000}}
    with pytest.raises(TemplateError, match=r"over the limit of 5,000,000"):
        render("{{ batch.item }}", huge, step="s", input_key="v")
    with pytest.raises(TemplateError, match=r"over the limit of 5,000,000"):
        render("echo {{ batch.item }}", huge, step="s", input_key="v")


def test_the_limit_is_configurable(write: Any, cli: Any, tmp_path: Path) -> None:
    assert render("{{ 'a' * 100 }}", {}, max_size=100) == "a" * 100
    with pytest.raises(TemplateError, match="over the limit of 99"):
        render("{{ 'a' * 100 }}", {}, max_size=99)
    path = write(
        """
name: limited
settings: {max_render_size: 1000}
steps:
  - {name: small, task: echo, inputs: {value: "{{ 'a' * 1000 }}"}}
  - {name: big, task: echo, inputs: {value: "{{ 'a' * 1001 }}"}}
"""
    )
    done = cli("run", str(path), "--format", "json")
    assert done.returncode == 1
    steps = json.loads(done.stdout)["steps"]
    assert steps["small"]["status"] == "completed"
    assert "step `big`, input `value`" in steps["big"]["error"]
    assert "over the limit of 1,000" in steps["big"]["error"]


def test_ordinary_templates_still_work() -> None:
    assert render("{{ 'ab' * 3 }}", NS) == "ababab"
    assert render("{{ args.tags + ['b'] }}", NS) == ["a", "b"]
    assert render("{{ dict(batch.item, id=2) }}", NS) == {"id": 2, "tags": ["t"]}
    assert render("{{ '%5s|' % 'x' }}{{ 'y' | center(3) }}", NS) == "    x| y "
    assert render("{{ steps.load.result | join(',') }} {{ 2 ** 10 }}", NS) == "1,2 1024"
    assert render("{% for i in range(3) %}{{ i }}{% endfor %}", NS) == "012"


def test_values_are_never_rendered_again(write: Any, cli: Any, tmp_path: Path) -> None:
    """An item or param holding template syntax is data: it arrives as written."""
    items = ["{{ env.HOME }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{% raw %}x"]
    (tmp_path / "items.json").write_text(json.dumps(items), encoding="utf-8")
    path = write(
        """
name: ssti
params: {p: {default: "{{ 7 * 7 }}"}}
steps:
  - {name: load, task: file.read, inputs: {path: items.json, format: json}}
  - name: each
    task: batch
    inputs:
      items: "{{ steps.load.result }}"
      task: {task: echo, inputs: {value: "[{{ batch.item }}] {{ args.p }}"}}
  - name: shell
    task: batch
    inputs:
      items: "{{ steps.load.result }}"
      task: {task: shell, inputs: {command: "printf '%s' {{ batch.item }}"}}
"""
    )
    done = cli("run", str(path), "--format", "json")
    assert done.returncode == 0, done.stderr
    steps = json.loads(done.stdout)["steps"]
    assert steps["each"]["result"]["results"] == [f"[{item}] {{{{ 7 * 7 }}}}" for item in items]
    assert [r["stdout"] for r in steps["shell"]["result"]["results"]] == items
