"""What every `shopfloor` command shares: the consoles, the bad-input policy and a staged progress bar."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from environments.errors import ShopfloorInputError

console = Console()
err_console = Console(stderr=True)


def fail_on_bad_input(fn):
    """Bad input: one line on stderr, exit 2. Any other error: one line, exit 1 (SHOPFLOOR_DEBUG=1 re-raises)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ShopfloorInputError as exc:
            err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # an internal error: say so in one line, keep the traceback for debugging
            if os.environ.get("SHOPFLOOR_DEBUG"):
                raise
            err_console.print(f"internal error: {exc.__class__.__name__}: {exc} (set SHOPFLOOR_DEBUG=1 for the "
                              f"traceback)", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper

class StagedProgress:
    """A rich progress bar with one row per stage; call it as ``(stage, done, total)``."""

    def __init__(self) -> None:
        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=err_console)
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> Callable[[str, int, int], None]:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(stage, total=total)
        self.progress.update(self.tasks[stage], completed=done, total=total)


def report_file_error(path, exc: ShopfloorInputError, json_: bool) -> None:
    """A file a per-file command could not read: one line on stderr, and a JSON row when asked for."""
    import json

    err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
    if json_:
        print(json.dumps({"file": str(path), "error": str(exc)}), flush=True)
