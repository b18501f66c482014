"""The local web server of `expyrun dashboard` and `expyrun ui`: one place for how they listen, who they
answer and how they stop.

Why one module: both serve a WSGI application to a browser on this machine with the standard
library's server (threaded, so a page's parallel requests do not queue behind a slow one), on
127.0.0.1 at port 8080 or the next free one, until Ctrl-C (exit 0) or SIGTERM (143). Listening on
127.0.0.1 does not keep other web sites out: a page open in the user's browser can send requests,
and through DNS rebinding (a name of the attacker's that resolves to 127.0.0.1) read the answers.
Such requests carry the attacker's name in their `Host` header and, for writes, its `Origin`, so
both servers answer only local hosts and origins (`is_local_host`, `is_local_origin`); what each
then allows (optuna-dashboard's edits, the viewer's read-only pages) is theirs. Costs the standard
library's `wsgiref` and `socketserver`, imported when a server is made.
"""

from __future__ import annotations

import errno
import signal
import sys
from typing import Any

from expyrun import console
from expyrun.errors import UsageError
from expyrun.run.status import SIGNAL_EXIT

DEFAULT_PORT = 8080
PORTS_TRIED = 100  # from the asked port up: "the next free one"
LOCAL_HOSTS = ("127.0.0.1", "localhost")  # the names a browser on this machine uses for the server


class _Stopped(BaseException):
    """SIGTERM: stop serving, as Ctrl-C does. A BaseException, as KeyboardInterrupt is: socketserver
    catches `Exception` around each request, so a SIGTERM arriving mid-request was swallowed there."""


def is_local_host(host: str, port: int) -> bool:
    """A `Host` header naming this server as a browser on this machine does: a local name, with
    this port or without one. A rebound name of another site is neither."""
    name, colon, given = host.lower().partition(":")
    return name in LOCAL_HOSTS and (not colon or given == str(port))


def is_local_origin(origin: str, port: int) -> bool:
    """An `Origin` header of a page served from this server (`null`, from a sandboxed or file
    page, is not one)."""
    ports = [f":{port}", ""] if port == 80 else [f":{port}"]
    return origin.lower() in {f"http://{name}{suffix}" for name in LOCAL_HOSTS for suffix in ports}


def local_server(app: Any, port: int) -> Any:
    """A threaded WSGI server on 127.0.0.1, at `port` or the next free port above it."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True  # a request still open at Ctrl-C does not hold the exit

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            """One line per request would drown the URL: requests are not logged."""

    for candidate in range(port, min(port + PORTS_TRIED, 65536)):
        try:
            return make_server("127.0.0.1", candidate, app, server_class=Server, handler_class=QuietHandler)
        except OSError as error:
            if error.errno not in (errno.EADDRINUSE, errno.EACCES):
                raise
    raise UsageError(f"no free port from {port} to {min(port + PORTS_TRIED, 65536) - 1}", "choose one with --port")


def serve_until_stopped(server: Any, url: str, banner: str) -> int:
    """Serve until Ctrl-C (exit 0) or SIGTERM (143): the banner on stderr, the URL alone on stdout (for
    scripts). Shared by `expyrun dashboard` and `expyrun ui`."""

    def stop(_signum: int, _frame: Any) -> None:
        raise _Stopped

    previous = signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored (`cmd &`)
    sys.stderr.write(f"expyrun: {console.visible(banner)}\n")
    sys.stderr.flush()
    sys.stdout.write(url + "\n")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        return 0
    except _Stopped:
        return SIGNAL_EXIT[signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    return 0
