"""``batchline ui``: the command that starts the dashboard."""

from __future__ import annotations

import asyncio
import contextlib
import os
import webbrowser
from pathlib import Path

import click

from batchline.errors import BatchlineError
from batchline.ui.hosts import is_loopback

DEFAULT_STATE = ".batchline/state.db"


def _paths(states: tuple[str, ...], workspaces: tuple[str, ...]) -> list[Path]:
    paths = [Path(state) for state in states]
    paths += [Path(workspace) / "state.db" for workspace in workspaces]
    if not paths:
        paths = [Path(os.environ.get("BATCHLINE_STATE", DEFAULT_STATE))]
    return paths


@click.command("ui")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Path(dir_okay=False),
    help="A state file to show (repeatable). Default: $BATCHLINE_STATE or .batchline/state.db.",
)
@click.option(
    "--workspace",
    "workspaces",
    multiple=True,
    type=click.Path(file_okay=False),
    help="A workflow workspace to show (its state.db; repeatable).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--open", "open_browser", is_flag=True, help="Open the dashboard in a browser.")
@click.option(
    "--poll", default=1.0, show_default=True, type=click.FloatRange(0.1, 60.0),
    help="Seconds between looks at the state file on live pages.",
)  # fmt: skip
def ui_command(
    states: tuple[str, ...],
    workspaces: tuple[str, ...],
    host: str,
    port: int,
    open_browser: bool,
    poll: float,
) -> None:
    """Start a local, read-only dashboard over state files: runs, progress, failures, items."""
    from batchline.ui.server import create_app  # noqa: PLC0415 - aiohttp only for this command

    paths = _paths(states, workspaces)
    try:
        app = create_app(paths, loopback_only=is_loopback(host), poll_seconds=poll)
    except BatchlineError as exc:
        raise click.ClickException(str(exc)) from exc
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(app, host, port, open_browser, paths))


async def _main(app: object, host: str, port: int, open_browser: bool, paths: list[Path]) -> None:
    from aiohttp import web  # noqa: PLC0415 - the server only when the command runs

    from batchline.ui.server import serve  # noqa: PLC0415

    assert isinstance(app, web.Application)
    try:
        runner = await serve(app, host, port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port} ({exc.strerror}). Pass another --port, "
            "or --port 0 to pick a free one."
        ) from None
    bound = runner.addresses[0][1] if runner.addresses else port
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound}/"
    click.echo(f"batchline ui: {url}  (read-only over {', '.join(map(str, paths))}; Ctrl-C stops)")
    if not is_loopback(host):
        click.echo(
            f"warning: listening on {host}, not 127.0.0.1: anyone who can reach this machine "
            "can read these runs. Use --host 127.0.0.1 to keep it local.",
            err=True,
        )
    if open_browser:
        webbrowser.open(url)
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await runner.cleanup()
