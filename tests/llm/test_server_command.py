"""`python -m batchline.testing.server` takes every fault option the class does (issue #19)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request

import pytest


def _ask(url: str) -> tuple[int, dict[str, str], str]:
    body = json.dumps({"model": "test-model", "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(  # noqa: S310 - a local http:// URL the server printed
        f"{url}/chat/completions",
        data=body.encode(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer t"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, dict(answer.headers), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_the_server_command_injects_the_faults_it_is_given() -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "batchline.testing.server",
            "--port",
            "0",
            "--rate-limit-first",
            "1",
            "--retry-after",
            "0.25",
            "--malformed-rate",
            "1.0",
            "--timeout-rate",
            "0",
            "--hang-seconds",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("serving on http://127.0.0.1:"), server.stderr.read()
        url = line.split("serving on ", 1)[1].strip()
        status, headers, _ = _ask(url)
        assert status == 429
        assert float(headers["Retry-After"]) == pytest.approx(0.25)
        status, _, text = _ask(url)
        assert status == 200
        content = json.loads(text)["choices"][0]["message"]["content"]
        with pytest.raises(json.JSONDecodeError):
            json.loads(content)  # --malformed-rate 1.0: broken JSON in every answer
    finally:
        server.send_signal(signal.SIGINT)
        server.communicate(timeout=30)


def test_the_server_command_lists_its_options() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "batchline.testing.server", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for flag in ("--timeout-rate", "--malformed-rate", "--retry-after", "--hang-seconds"):
        assert flag in done.stdout
