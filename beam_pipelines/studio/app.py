"""The studio's web server: a Starlette app serving the front end in static/ and a JSON API over
workspace.py and corpus.py, run by uvicorn on 127.0.0.1 only.

A local server that writes files must not be driven by other web pages the same browser opens:
requests must name this server as their Host (a DNS-rebinding page names its own), a request
that carries an Origin must come from this server's own pages, and every write is a JSON POST, which
a cross-site form cannot send. Nothing is loaded from the network: the page's HTML, script and
style are the files in static/.
"""
from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from flanforge.beam_pipelines.catalog import SpecError
from flanforge.beam_pipelines.studio.corpus import corpus_records, corpus_summary
from flanforge.beam_pipelines.studio.workspace import SAMPLES, StudioError, Workspace
from flanforge.schemas.manifest import ManifestError

STATIC_DIR = Path(__file__).parent / "static"
LOCAL_HOSTS = ("127.0.0.1", "localhost")


def _jsonable(value: Any) -> Any:
    """json.dumps' fallback: source rows may hold bytes (a TFRecord image) or other odd values."""
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    return repr(value)


class JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=False, default=_jsonable).encode("utf-8")


class SameOrigin(BaseHTTPMiddleware):
    """Refuse requests from other sites' pages, and writes that are not JSON (see the module docs;
    the Host check is Starlette's TrustedHostMiddleware)."""

    def __init__(self, app: Any, hosts: tuple[str, ...]):
        super().__init__(app)
        self.hosts = hosts

    async def dispatch(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        origin = request.headers.get("origin")
        if origin and (urlsplit(origin).hostname or "") not in self.hosts:
            return JSON({"error": f"origin {origin!r} refused"}, 403)
        if request.method == "POST" and request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSON({"error": "POST bodies must be application/json"}, 415)
        return await call_next(request)


def _handler(work: Callable[[Request, dict[str, Any]], Any]) -> Callable[[Request], Awaitable[Response]]:
    """A route from a plain function of (request, JSON body): run in a worker thread (rendering
    and file reads block), its errors answered as {"error": ...} with their status."""

    async def endpoint(request: Request) -> Response:
        body: dict[str, Any] = {}
        if request.method == "POST":
            try:
                body = await request.json()
            except ValueError:
                return JSON({"error": "the body is not JSON"}, 400)
            if not isinstance(body, dict):
                return JSON({"error": "the body must be a JSON object"}, 400)
        try:
            return JSON(await run_in_threadpool(work, request, body))
        except StudioError as e:
            return JSON({"error": str(e)}, e.status)
        except SpecError as e:
            return JSON({"error": "\n".join(e.problems), "problems": e.problems}, 422)
        except (ManifestError, OSError) as e:
            return JSON({"error": str(e)}, 404 if isinstance(e, FileNotFoundError) else 422)
        except (TypeError, ValueError) as e:  # a malformed parameter (offset=abc)
            return JSON({"error": f"bad request: {e}"}, 400)

    return endpoint


def create_app(workspace: Workspace, hosts: tuple[str, ...] = LOCAL_HOSTS) -> Starlette:
    """The studio for one workspace; `hosts` are the Host names it answers to."""

    def catalog(request: Request, body: dict[str, Any]) -> Any:
        return workspace.catalog_summary()

    def task(request: Request, body: dict[str, Any]) -> Any:
        return workspace.task_detail(request.path_params["name"])

    def render(request: Request, body: dict[str, Any]) -> Any:
        return workspace.render(
            request.path_params["name"], body.get("templates"), rows=str(body.get("rows", SAMPLES)), offset=body.get("offset", 0),
            limit=body.get("limit", 10), few_shot=body.get("few_shot", 0), no_options=body.get("no_options", False),
        )

    def check(request: Request, body: dict[str, Any]) -> Any:
        result = workspace.check(request.path_params["name"], body.get("templates"), body.get("base_sha256"))
        return {"path": result.path, "diff": result.diff, "problems": result.problems}

    def save(request: Request, body: dict[str, Any]) -> Any:
        return workspace.save(request.path_params["name"], body.get("templates"), body.get("base_sha256"))

    def corpus(request: Request, body: dict[str, Any]) -> Any:
        return corpus_summary(_required(request, "dir"))

    def records(request: Request, body: dict[str, Any]) -> Any:
        q = request.query_params
        return corpus_records(
            _required(request, "dir"), _required(request, "task"), split=q.get("split") or None, template=q.get("template") or None,
            offset=int(q.get("offset", 0)), limit=int(q.get("limit", 20)),
        )

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html")

    routes = [
        Route("/", index),
        Route("/api/catalog", _handler(catalog)),
        Route("/api/tasks/{name}", _handler(task)),
        Route("/api/tasks/{name}/render", _handler(render), methods=["POST"]),
        Route("/api/tasks/{name}/check", _handler(check), methods=["POST"]),
        Route("/api/tasks/{name}/save", _handler(save), methods=["POST"]),
        Route("/api/corpus", _handler(corpus)),
        Route("/api/corpus/records", _handler(records)),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(hosts)), Middleware(SameOrigin, hosts=hosts)]
    return Starlette(routes=routes, middleware=middleware)


def _required(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise StudioError(f"missing query parameter {name!r}")
    return value


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port (0: any free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    return sock


def make_server(app: Starlette):
    """A uvicorn server for `app`, to run on a bound socket (`.run(sockets=[sock])`; `should_exit` stops it)."""
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))


def run_studio(templates_dir: str | None, sources: dict[str, dict[str, str]], port: int) -> int:
    """`flanforge studio`: serve until Ctrl-C."""
    try:
        workspace = Workspace(templates_dir, sources)
    except StudioError as e:
        print(f"flanforge studio: {e}", file=sys.stderr)
        return 2
    workspace.reload()  # a catalog that does not load, or a --source for an unknown task: a SpecError now
    try:
        sock = bind(port)
    except OSError as e:
        print(f"flanforge studio: cannot listen on 127.0.0.1:{port}: {e.strerror} (choose another with --port, or --port 0)", file=sys.stderr)
        return 2
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    print(f"flanforge studio: {url}  (templates: {workspace.root}; Ctrl-C stops it)", flush=True)
    server = make_server(create_app(workspace))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    return 0
