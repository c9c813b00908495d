"""`iberlite label`: serve the labelling page of a task's newest batch on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from iberlite.cli.options import DbOpt, TasksDirOpt
from iberlite.errors import UserError


def label(
    task: Annotated[str, typer.Option("--task", help="Task whose newest selected batch to label (e.g. bec_eu).")],
    db: DbOpt = Path("iberlite.db"),
    host: Annotated[str, typer.Option("--host", help="Address to bind; anything but loopback needs --token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")] = 0,
    token: Annotated[Optional[str], typer.Option("--token", help="Secret every request must carry (?token= or the X-Iberlite-Token header).")] = None,
    labeller: Annotated[Optional[str], typer.Option("--labeller", help="Name stored with each label \\[default: $USER, else anonymous].")] = None,
    tasks_dir: TasksDirOpt = None,
) -> None:
    """Label the newest batch `iberlite select` picked, on a local web page; each label is stored as given.

    Keys: 1-9 choose, s skips, u undoes, g shows the model's guess."""
    from iberlite.label.page import serve  # FastAPI and uvicorn (the label extra): loaded only here
    from iberlite.label.queue import LabelQueue, default_labeller

    if token is not None and not token.strip():
        raise UserError("--token is empty; give a secret, or leave --token out on 127.0.0.1.")
    queue = LabelQueue.for_task(db, task, labeller or default_labeller(), tuple(tasks_dir or ()))

    def ready(url: str) -> None:
        # plain print, flushed: a script (or a test) reads the URL from a pipe
        print(f"Labelling {task} at {url} (Ctrl-C to stop)", flush=True)

    serve(queue, host=host, port=port, token=token, on_ready=ready)
    print(f"Stopped; every label given is stored in {db}.", flush=True)
