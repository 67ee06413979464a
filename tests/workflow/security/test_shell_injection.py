"""Shell commands: a value never becomes shell syntax in any quoting style, and arrives intact."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batchline.workflow import TemplateError, get_task, load_workflow
from batchline.workflow.shellquote import assemble
from batchline.workflow.stepinputs import render_inputs
from batchline.workflow.tasks import TaskConfig
from batchline.workflow.templating import render_command

CANARY = "PWNED"

# Each payload tries to run `touch PWNED` (in the test's folder) from a value.
PAYLOADS = [
    f"a; touch {CANARY}",
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"x'; touch {CANARY}; echo '",
    f'x"; touch {CANARY}; echo "',
    f"a\ntouch {CANARY}",
    f"a && touch {CANARY} #",
    f"a | touch {CANARY}",
    f"$(touch {CANARY})'\"`touch {CANARY}`\"'",
    f"\\'; touch {CANARY}; echo \\'",
    f'\\"; touch {CANARY}; echo \\"',
    f"${{IFS}}$(touch${{IFS}}{CANARY})",
    f"x\nEOF\ntouch {CANARY}\ncat <<EOF",
]
BENIGN = [
    "plain",
    "with spaces  and   runs",
    'it\'s "quoted"',
    "$HOME and ${PATH}",
    "`backticks` and $(parens)",
    "a\nnew line",
    "ünïcødé ☃ 日本",
    "back\\slash \\n",
    "",
    "-n",
    "*.py ~ ? [a]",
    "!event #hash",
]
STYLES = {
    "unquoted": "printf '%s' {{ x }}",
    "single": "printf '%s' '{{ x }}'",
    "double": "printf '%s' \"{{ x }}\"",
}


def run_shell(command: Any, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S602 - the shell is what is tested
        command, shell=True, cwd=cwd, capture_output=True, text=True, check=False, timeout=30
    )


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("payload", PAYLOADS)
def test_injection_payloads_never_run(tmp_path: Path, style: str, payload: str) -> None:
    command = render_command(STYLES[style], {"x": payload})
    done = run_shell(command, tmp_path)
    assert not (tmp_path / CANARY).exists(), command
    assert done.stdout == payload  # and the value arrives intact, as one argument


@pytest.mark.parametrize("style", list(STYLES))
@pytest.mark.parametrize("value", BENIGN)
def test_benign_values_arrive_intact(tmp_path: Path, style: str, value: str) -> None:
    done = run_shell(render_command(STYLES[style], {"x": value}), tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == value


@pytest.mark.parametrize(
    "template",
    [
        "printf '%s' pre{{ x }}post",
        "printf '%s' \"pre{{ x }}post\"",
        "printf '%s' 'pre{{ x }}post'",
        "printf '%s' \"$(printf '%s' {{ x }})\"",
        "printf '%s' \"$(printf '%s' \"{{ x }}\")\"",
        "printf '%s' $(printf '%s' '{{ x }}' | base64 | base64 -d)",
        "X={{ x }}; printf '%s' \"$X\"",
        "printf '%s' ${UNSET:-{{ x }}}",
        "printf '%s' \\{{ x }}",
        "printf '%s' \"\\{{ x }}\"",
        "printf '%s' ${{ x }}",
        "printf '%s' \"${{ x }}\"",
        "printf '%s' done # {{ x }}",
        "cat <<EOF\n{{ x }}\nEOF",
        "cat <<-'EOF'\n\t{{ x }}\nEOF",
        "cat <<\"EOF\" && printf '%s' {{ x }}\nbody {{ x }}\nEOF",
        "{% for v in [x, x] %}printf '%s' {{ v }}; {% endfor %}",
        "{% set y %}[{{ x }}]{% endset %}printf '%s' {{ y }}",
    ],
)
@pytest.mark.parametrize("payload", PAYLOADS[:9])
def test_other_contexts_are_safe(tmp_path: Path, template: str, payload: str) -> None:
    refused = ""
    try:
        command = render_command(template, {"x": payload})
    except TemplateError as exc:  # refusing is safe too (a value that would end a heredoc)
        refused = str(exc)
    else:
        run_shell(command, tmp_path)
    assert not refused or "here-document" in refused
    assert not (tmp_path / CANARY).exists(), template


def test_values_keep_their_meaning_in_the_other_contexts(tmp_path: Path) -> None:
    value = 'it\'s $HOME `x` "q" \\ ☃'
    for template, expected in [
        ("printf '%s' pre{{ x }}post", f"pre{value}post"),
        ("printf '%s' \"$(printf '%s' \"{{ x }}\")\"", value),
        ("X={{ x }}; printf '%s' \"$X\"", value),
        ("cat <<EOF\n{{ x }}\nEOF", value + "\n"),
        ("cat <<'EOF'\n{{ x }}\nEOF", value + "\n"),
        ("printf '%s' done # {{ x }}", "done"),
        ("{% set y %}[{{ x }}]{% endset %}printf '%s' {{ y }}", f"[{value}]"),
    ]:
        done = run_shell(render_command(template, {"x": value}), tmp_path)
        assert done.stdout == expected, template


def test_a_value_cannot_end_a_here_document_early() -> None:
    with pytest.raises(TemplateError, match=r"(?s)step `s`, input `command`.*here-document early"):
        render_command("cat <<EOF\n{{ x }}\nEOF", {"x": "a\nEOF\nrm -rf /"}, step="s")
    with pytest.raises(TemplateError, match="here-document delimiter"):
        render_command("cat <<{{ x }}\nbody\nEOF", {"x": "EOF"})


def test_values_inside_backticks_are_refused_with_the_fix() -> None:
    with pytest.raises(TemplateError, match=r"backticks.*\$\( \.\.\. \)"):
        render_command("echo `echo {{ x }}`", {"x": "a"})


def test_quote_filter_is_never_applied_twice(tmp_path: Path) -> None:
    value = "a b'c"
    once = render_command("printf '%s' {{ x | quote }}", {"x": value})
    twice = render_command("printf '%s' {{ x | quote | quote }}", {"x": value})
    assert once == twice == render_command("printf '%s' {{ x }}", {"x": value})
    assert run_shell(once, tmp_path).stdout == value
    # inside quotes the quoted text itself arrives (for a command that parses it again)
    in_quotes = render_command("printf '%s' \"{{ x | quote }}\"", {"x": value})
    assert run_shell(in_quotes, tmp_path).stdout == shlex.quote(value)
    remote = render_command("sh -c \"printf '%s' {{ x | quote }}\"", {"x": value})
    assert run_shell(remote, tmp_path).stdout == value
    files = render_command("printf '<%s>' {{ xs | quote }}", {"xs": ["a b", "c;d", "$(e)"]})
    assert run_shell(files, tmp_path).stdout == "<a b><c;d><$(e)>"


def test_shell_unsafe_is_explicit_and_pastes_shell_code(tmp_path: Path) -> None:
    for name in ("shell_unsafe", "raw_shell"):
        command = render_command(
            f"{{{{ x | {name} }}}} && printf '%s' {{{{ y }}}}",
            {
                "x": "printf '%s' one",
                "y": "$(two)",
            },
        )
        assert run_shell(command, tmp_path).stdout == "one$(two)"


def test_list_form_passes_each_element_as_one_argument(tmp_path: Path) -> None:
    payload = f"a; touch {CANARY} $(touch {CANARY})"
    config = TaskConfig(
        name="s",
        type="shell",
        inputs={
            "command": render_command(
                ["printf", "<%s>", "{{ x }}", "{{ n }}"], {"x": payload, "n": 2}
            )
        },
        workspace=tmp_path,
        base_dir=tmp_path,
    )
    result = get_task("shell")(config)
    assert result["stdout"] == f"<{payload}><2>"
    assert not (tmp_path / CANARY).exists()
    assert render_command("{{ xs }}", {"xs": ["a", "b c"]}) == ["a", "b c"]


def test_assemble_escapes_for_each_context() -> None:
    value = ("a'b\"c$d`e\\f",)
    assert assemble(["echo ", value]) == "echo 'a'\"'\"'b\"c$d`e\\f'"
    assert assemble(["echo '", value, "'"]) == "echo 'a'\"'\"'b\"c$d`e\\f'"
    assert assemble(['echo "', value, '"']) == 'echo "a\'b\\"c\\$d\\`e\\\\f"'


def test_workflow_batch_over_hostile_items_is_safe_end_to_end(
    write: Any, cli: Any, tmp_path: Path
) -> None:
    """Every payload x every quoting style, through the CLI, a batch step and file items."""
    items = PAYLOADS[:6] + BENIGN
    (tmp_path / "items.json").write_text(json.dumps(items), encoding="utf-8")
    steps = "".join(
        f"""
  - name: {style}
    task: batch
    inputs:
      items: "{{{{ steps.load.result }}}}"
      chunk_size: 5
      task:
        task: shell
        inputs:
          command: {json.dumps(template.replace("{{ x }}", "{{ batch.item }}"))}
"""
        for style, template in STYLES.items()
    )
    path = write(
        "name: hostile\nsteps:\n  - name: load\n    task: file.read\n"
        f"    inputs: {{path: items.json, format: json}}\n{steps}"
    )
    done = cli("run", str(path), "--format", "json")
    assert done.returncode == 0, done.stdout[-3000:]
    assert not (tmp_path / CANARY).exists()
    result = json.loads(done.stdout)
    for style in STYLES:
        outputs = [r["stdout"] for r in result["steps"][style]["result"]["results"]]
        assert outputs == items, style


def test_shipped_examples_quote_their_items(tmp_path: Path) -> None:
    """thumbnails.yaml and word_counts.yaml over file names that are attacks."""
    root = Path(__file__).resolve().parents[3]

    for name in ("thumbnails.yaml", "word_counts.yaml"):
        spec = load_workflow(root / "examples" / "workflows" / name)
        for step in spec.steps:
            nested = step.inputs.get("task")
            if step.task != "batch" or nested["task"] != "shell":
                continue
            for payload in PAYLOADS:
                namespaces = {
                    "args": {},
                    "env": {"OUT_DIR": "out dir"},
                    "steps": {},
                    "workflow": {},
                    "batch": {"item": payload, "index": 0},
                }
                inputs = render_inputs("shell", nested["inputs"], namespaces, step=step.name)
                command = inputs["command"]
                if isinstance(command, list):
                    subprocess.run(command, cwd=tmp_path, capture_output=True, check=False)
                else:
                    run_shell(command, tmp_path)
                assert not (tmp_path / CANARY).exists(), (name, command)


@pytest.mark.parametrize(
    "template",
    [
        "eval printf \"'%s'\" {{ x }}",
        "eval \"printf '%s' {{ x }}\"",
        "eval 'printf %s {{ x }}'",
        "sh -c \"printf '%s' {{ x }}\"",
        "sh -c 'printf %s {{ x }}'",
        "bash -c \"printf '%s' '{{ x }}'\"",
        '/bin/sh -ec "printf \'%s\' \\"{{ x }}\\""',
        "env LC_ALL=C sh -c \"printf '%s' {{ x }}\"",
        'sh -c "sh -c \\"printf \'%s\' {{ x }}\\""',
        "X=$(sh -c \"printf '%s' {{ x }}\"); printf '%s' \"$X\"",
        "printf '%s' \"$(sh -c \"printf '%s' '{{ x }}'\")\"",
    ],
)
@pytest.mark.parametrize("payload", PAYLOADS[:9])
def test_commands_run_again_by_eval_or_sh_c_are_escaped_twice(
    tmp_path: Path, template: str, payload: str
) -> None:
    done = run_shell(render_command(template, {"x": payload}), tmp_path)
    assert not (tmp_path / CANARY).exists(), template
    assert done.stdout == payload, (template, done.stderr)


def test_validate_warns_about_every_shell_unsafe(write: Any, cli: Any) -> None:
    path = write(
        """
name: unsafe
params: {script: {default: "echo hi"}}
steps:
  - name: a
    task: shell
    inputs: {command: "{{ args.script | shell_unsafe }}"}
  - name: b
    task: batch
    inputs:
      items: [1]
      task: {task: shell, inputs: {command: "echo {{ batch.item | raw_shell }}"}}
  - {name: c, task: shell, inputs: {command: "echo {{ args.script }}"}}
"""
    )
    done = cli("validate", str(path))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert "wf.yaml:7: step `a` uses `| shell_unsafe`" in warnings[0]
    assert "wf.yaml:12: step `b` uses `| raw_shell`" in warnings[1]
    assert "runs as shell code" in warnings[0]


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")))
def test_any_text_arrives_intact_in_every_quoting_style(tmp_path: Path, value: str) -> None:
    command = render_command(
        "printf '%s\\0' {{ x }} '{{ x }}' \"{{ x }}\" \"$(printf '%s' {{ x }})\"X", {"x": value}
    )
    done = subprocess.run(  # noqa: S602 - the shell is what is tested
        command, shell=True, cwd=tmp_path, capture_output=True, check=False, timeout=30
    )
    outputs = done.stdout.decode("utf-8", "surrogateescape").split("\0")
    assert outputs[:3] == [value, value, value]
    assert outputs[3] == value.rstrip("\n") + "X"  # $( ) drops trailing newlines, as always
