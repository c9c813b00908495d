"""The labelling page: a small web app on this machine that serves one `LabelQueue`.

The page and its script and style come from `static/` and load nothing from elsewhere, so it
works offline. Bound to loopback it needs nothing else; anywhere else it needs a token, which
every request (the page, its files, the API) must carry as `?token=` or `X-Iberlite-Token`.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from collections.abc import Callable
from dataclasses import asdict
from importlib import resources
from typing import Any
from urllib.parse import quote

from iberlite.errors import UserError
from iberlite.label.queue import AlreadyLabelled, Card, LabelQueue

NEEDS_EXTRA = "The labelling page needs the label extra: pip install 'iberlite[label]'."
try:
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, Response
    from pydantic import BaseModel, Field
except ModuleNotFoundError as exc:  # the optional `label` extra
    if (exc.name or "").split(".")[0] in ("fastapi", "uvicorn", "starlette", "pydantic"):
        raise UserError(NEEDS_EXTRA) from None
    raise

TOKEN_HEADER = "X-Iberlite-Token"
STATIC = {"page.js": "text/javascript; charset=utf-8", "page.css": "text/css; charset=utf-8"}


class LabelBody(BaseModel):
    """A label given on the page: the choice's number from 0 and how long the person took."""

    row_hash: str
    choice: int
    seconds: float | None = Field(default=None, ge=0)


class RowBody(BaseModel):
    """A row the page acts on (skip)."""

    row_hash: str


def _static(name: str) -> str:
    return resources.files("iberlite.label").joinpath("static", name).read_text(encoding="utf-8")


def _card_json(queue: LabelQueue, show_guess: bool) -> dict[str, Any]:
    card: Card | None = queue.current(show_guess=show_guess)
    progress = card.progress if card is not None else queue.progress()
    body = asdict(card) if card is not None else None
    if body is not None:
        del body["progress"]
    return {"task": queue.task.name, "card": body, "progress": asdict(progress)}


def _error(exc: UserError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=409 if isinstance(exc, AlreadyLabelled) else 400)


def make_app(queue: LabelQueue, token: str | None) -> FastAPI:
    """The web app of the page and its JSON API; with a token, a request without it gets 403."""
    app = FastAPI(title="iberlite label", docs_url=None, redoc_url=None, openapi_url=None)
    # the page's own files carry the token too: it is put into their links on the way out
    query = f"?token={quote(token, safe='')}" if token else ""

    @app.middleware("http")
    async def check_token(request: Request, call_next: Callable[[Request], Any]) -> Any:
        if token is not None:
            given = request.query_params.get("token") or request.headers.get(TOKEN_HEADER) or ""
            if not secrets.compare_digest(given.encode(), token.encode()):
                return Response("Forbidden: open the URL `iberlite label` printed, with its token.\n",
                                status_code=403, media_type="text/plain")
        return await call_next(request)

    @app.get("/")
    def index() -> Response:
        html = _static("index.html").replace("__QUERY__", query)
        return Response(html, media_type="text/html; charset=utf-8", headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response("Not found.\n", status_code=404, media_type="text/plain")
        return Response(_static(name), media_type=STATIC[name], headers={"Cache-Control": "no-store"})

    @app.get("/api/card")
    def card(guess: int = 0) -> Any:
        try:
            return _card_json(queue, bool(guess))
        except UserError as exc:
            return _error(exc)

    @app.post("/api/label")
    def label(body: LabelBody) -> Any:
        try:
            event = queue.give(body.row_hash, body.choice, body.seconds)
        except UserError as exc:
            return _error(exc)
        return {"row_hash": event.row_hash, "label": event.label}

    @app.post("/api/skip")
    def skip(body: RowBody) -> Any:
        try:
            queue.skip(body.row_hash)
        except UserError as exc:
            return _error(exc)
        return {"row_hash": body.row_hash}

    @app.post("/api/undo")
    def undo() -> Any:
        try:
            return {"row_hash": queue.undo()}
        except UserError as exc:
            return _error(exc)

    return app


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach `host` ("localhost", 127.x.x.x, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket, so that port 0 is resolved to a real port before the URL is told."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UserError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}).") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UserError(f"Cannot listen on {host}:{port} ({exc.strerror or exc}).") from None
    return sock


def page_url(sock: socket.socket, token: str | None) -> str:
    """The address to open: the bound host and port, with the token when there is one."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"?token={quote(token, safe='')}" if token else "")


def serve(queue: LabelQueue, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
          on_ready: Callable[[str], None] | None = None) -> None:
    """Serve the page until Ctrl-C; `on_ready` gets the URL once the port is bound.

    A host other than loopback needs a token: anyone who can reach the port could label."""
    if not is_loopback(host) and not token:
        raise UserError(f"Serving on {host} needs --token: anyone who can reach it could label.")
    sock = _bind(host, port)
    try:
        server = uvicorn.Server(uvicorn.Config(make_app(queue, token), log_level="warning", access_log=False))
        if on_ready is not None:
            on_ready(page_url(sock, token))  # connections made now wait in the socket's backlog
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn raises the Ctrl-C again once it has shut down
        pass
    finally:
        sock.close()
