"""`expyrun ui [DIR] [--port P]`: the runs viewer's web server (SPEC 11.3), read-only, on 127.0.0.1.

Why the standard library's WSGI server (`wsgiref`, threaded, as `expyrun dashboard` serves
optuna-dashboard) rather than Starlette/uvicorn, bottle or Dash: the page is one static HTML file
and a few JSON answers, so a framework would route seven paths; what costs time is reading runs,
not serving (`benchmarks/bench_ui.py`: of the 0.5 s answer to a 10,000-run table, 0.4 s is reading
the run folders; importing the standard library's server takes 26 ms and 8 MB, bottle 38 ms and
11 MB, Starlette with uvicorn 84 ms and 17 MB, Dash 300 ms and 35 MB, plus a dependency to install
on every cluster, and Dash would redraw through Python callbacks what the page draws itself). plotly.js
is served from the installed plotly package (no CDN: clusters have no internet).

What keeps other web sites out (listening on 127.0.0.1 does not): a request whose `Host` is not
127.0.0.1/localhost (DNS rebinding) gets 421, one with another site's `Origin` 403, and any method
but GET and HEAD 405. Paths from the page are checked by `data.run_folder`: nothing outside DIR.
Everything that came from a run reaches the page as JSON and is put in the page as text
(`textContent`), never as HTML: see `static/app.js`.
"""

from __future__ import annotations

import json
import mimetypes
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from expyrun.browse.local_server import DEFAULT_PORT, is_local_host, is_local_origin, local_server, serve_until_stopped
from expyrun.errors import UsageError
from expyrun.ui import data, live

STATIC = Path(__file__).parent / "static"
PAGES = {"/": "index.html", "/static/app.js": "app.js", "/static/app.css": "app.css"}
INSTALL_HINT = "pip install 'expyrun[ui]'"
_SECURITY_HEADERS = [
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'self'; script-src 'self' 'unsafe-eval'; style-src 'self' "
     "'unsafe-inline'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]  # fmt: skip

Start = Callable[..., Any]


def plotly_js() -> Path:
    """plotly.min.js of the installed plotly package; UsageError naming the extra when it is absent."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("plotly")  # found, not imported: the server needs its file only
    except (ImportError, ValueError, AttributeError):  # a plotly entry in sys.modules that is not a module
        spec = None
    if spec is None or spec.origin is None:
        raise UsageError(f"the runs viewer draws with plotly, which is not installed: {INSTALL_HINT}")
    path = Path(spec.origin).parent / "package_data" / "plotly.min.js"
    if not path.is_file():
        raise UsageError(f"the installed plotly has no plotly.min.js ({path}): {INSTALL_HINT}")
    return path


class Viewer:
    """The WSGI application: the page, plotly.js, and the JSON answers of `data`."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.table = data.Table(root)
        self.curves = live.Curves(data.DEFAULT_BUCKETS)
        self.plotly = plotly_js()

    def __call__(self, environ: dict[str, Any], start: Start) -> Iterable[bytes]:
        if not is_local_host(environ.get("HTTP_HOST", ""), self.port):
            return _text(start, "421 Misdirected Request", "only 127.0.0.1 and localhost are served")
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not is_local_origin(origin, self.port):
            return _text(start, "403 Forbidden", "requests from other web sites are refused")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return _text(start, "405 Method Not Allowed", "the runs viewer is read-only")
        path = environ.get("PATH_INFO", "/")
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            body = self._route(path, query, start)
            return [] if environ.get("REQUEST_METHOD") == "HEAD" else body  # HEAD: the headers only
        except data.Refused as refused:
            return _text(start, "403 Forbidden", str(refused))
        except data.Missing as missing:
            return _text(start, "404 Not Found", str(missing))

    def _route(self, path: str, query: dict[str, list[str]], start: Start) -> Iterable[bytes]:
        if path in PAGES:
            return _file(start, STATIC / PAGES[path])
        if path == "/static/plotly.min.js":
            return _file(start, self.plotly)
        if path == "/favicon.ico":  # asked by every browser: nothing, rather than a 404 in its console
            start("204 No Content", list(_SECURITY_HEADERS))  # a copy: wsgiref adds to the list it is given
            return []
        if path == "/api/runs":
            where = [line for text in query.get("where", []) for line in text.splitlines() if line.strip()]
            return _json(start, self.table.answer(where, _one(query, "version")))
        if not path.startswith("/api/"):
            return _text(start, "404 Not Found", f"{path}: no such page")
        run_dir = data.run_folder(self.root, _one(query, "run"))
        if path == "/api/run":
            return _json(start, data.run_page(self.root, run_dir))
        if path == "/api/names":
            return _json(start, data.metric_names(run_dir))
        if path == "/api/series":
            buckets = _one(query, "buckets")
            size = int(buckets) if buckets.isdigit() else data.DEFAULT_BUCKETS
            return _json(start, data.series(run_dir, _one(query, "name"), self.curves, size))
        if path == "/api/texts":
            return _json(start, data.texts(run_dir))
        if path == "/api/figures":
            return _json(start, data.figures(run_dir))
        if path == "/api/file":
            return _file(start, data.file_below(run_dir, _one(query, "path")))
        if path == "/api/log":
            return _json(start, {"log": data.log_tail(run_dir)})
        return _text(start, "404 Not Found", f"{path}: no such page")


def _one(query: dict[str, list[str]], key: str) -> str:
    values = query.get(key)
    return values[0] if values else ""


def _text(start: Start, status: str, text: str) -> list[bytes]:
    body = f"expyrun ui: {text}\n".encode()
    start(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                   *_SECURITY_HEADERS])  # fmt: skip
    return [body]


def _json(start: Start, value: Any) -> list[bytes]:
    body = json.dumps(value, ensure_ascii=False, allow_nan=False, default=str).encode()
    start("200 OK", [("Content-Type", "application/json; charset=utf-8"), ("Content-Length", str(len(body))),
                     *_SECURITY_HEADERS])  # fmt: skip
    return [body]


def _file(start: Start, path: Path) -> list[bytes]:
    body = path.read_bytes()
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
        kind += "; charset=utf-8"
    headers = [("Content-Type", kind), ("Content-Length", str(len(body))), *_SECURITY_HEADERS]
    if path.name == "plotly.min.js":  # 4 MB that never change while the server runs
        headers = [(k, "max-age=3600" if k == "Cache-Control" else v) for k, v in headers]
    start("200 OK", headers)
    return [body]


def serve(folder: Path, port: int | None) -> int:
    """Serve the viewer of the runs below `folder` until Ctrl-C (0) or SIGTERM (143)."""
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: not a port number (1 to 65535)")
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder", "give the folder holding the runs, such as outputs")
    root = Path(os.path.abspath(folder))
    plotly_js()  # refused before a port is taken
    missing = [name for name in PAGES.values() if not (STATIC / name).is_file()]
    if missing:
        raise UsageError(f"expyrun was installed without the viewer's page ({STATIC / missing[0]} is missing)")
    server = local_server(lambda environ, start: [], DEFAULT_PORT if port is None else port)
    bound = server.server_address[1]
    viewer = Viewer(root, bound)
    server.set_app(viewer)
    import threading

    # the table read once while the browser opens the page (10,000 runs: half a second it need not wait)
    threading.Thread(target=viewer.table.rows, name="expyrun-ui-table", daemon=True).start()
    url = f"http://127.0.0.1:{bound}/"
    return serve_until_stopped(server, url, f"runs below {root}; read-only; Ctrl-C stops the viewer")
