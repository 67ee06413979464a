"""Templates: namespaces, native types, sandboxing, and errors that name everything."""

from __future__ import annotations

from typing import Any

import pytest

from batchline.workflow import TemplateError, render

NS: dict[str, Any] = {
    "args": {"listing": "files.txt", "chunk": 20},
    "env": {"OUT_DIR": "out"},
    "steps": {"list": {"result": ["a", "b"], "status": "completed", "error": None}},
    "workflow": {"name": "thumbs", "run_id": "r1"},
    "batch": {"item": "a.png", "index": 3, "number": 4},
}


def test_single_expression_keeps_native_type() -> None:
    assert render("{{ steps.list.result }}", NS) == ["a", "b"]
    assert render("{{ args.chunk }}", NS) == 20
    assert render("  {{ args.chunk * 2 }}  ", NS) == 40
    assert render("chunk {{ args.chunk }}", NS) == "chunk 20"
    assert render({"n": "{{ batch.index }}", "xs": ["{{ batch.item }}"]}, NS) == {
        "n": 3,
        "xs": ["a.png"],
    }
    assert render("{{ args.missing | default('x') }}", NS) == "x"
    assert render(5, NS) == 5


def test_undefined_attribute_names_step_input_expression_namespace_and_suggestion() -> None:
    with pytest.raises(TemplateError) as caught:
        render("convert {{ batch.itme }}", NS, step="convert", input_key="command")
    message = str(caught.value)
    assert "step `convert`" in message
    assert "input `command`" in message
    assert "`convert {{ batch.itme }}`" in message
    assert "namespace `batch`" in message
    assert "available there: index, item, number" in message
    assert "Did you mean `item`?" in message
    assert caught.value.step == "convert"
    assert caught.value.input_key == "command"


def test_missing_key_of_a_nested_dict() -> None:
    with pytest.raises(TemplateError, match=r"`steps.list` has no `reslt`.*Did you mean `result`"):
        render("{{ steps.list.reslt }}", NS)


def test_unknown_namespace() -> None:
    with pytest.raises(TemplateError, match=r"`stepz` is undefined.*Did you mean `steps`"):
        render("{{ stepz.list }}", NS)


def test_syntax_and_runtime_errors() -> None:
    with pytest.raises(TemplateError, match="template syntax error"):
        render("{{ a b }}", NS)
    with pytest.raises(TemplateError, match="ZeroDivisionError"):
        render("{{ 1 / 0 }}", NS)


def test_sandbox_blocks_python_internals() -> None:
    with pytest.raises(TemplateError):
        render("{{ args.__class__.__mro__[1].__subclasses__() }}", NS)


def test_template_errors_are_terminal() -> None:
    from batchline import RetryPolicy

    assert RetryPolicy().delay_for(1, TemplateError("x")) is None
