"""`expyrun dashboard STUDY_RUN [--port P]`: optuna-dashboard for the study of a study folder.

Why a command rather than `optuna-dashboard URL`: the user knows the study folder, while where its
study lives takes reading it — the default journal sits beside the run folders, a `.journal` path
or a SQLite file is relative to the directory the study was launched from (`cwd` in its run.json),
and a database URL keeps its password as a `$VAR` reference in config.yml (read from this
environment). The server listens on 127.0.0.1 only, on port 8080 or the next free one, threaded so
the page's parallel requests do not queue behind a slow one, and runs until Ctrl-C (exit 0).

Why a guard in front of optuna-dashboard: its API has no authentication, and listening on
127.0.0.1 does not keep other sites out. Any web page open in the user's browser can send requests
to it, and through DNS rebinding (a name of the attacker's that resolves to 127.0.0.1) read the
answers and send `DELETE /api/studies/0`, erasing the study. Such requests carry the attacker's
name in their `Host` header and, for writes, its `Origin`: only `127.0.0.1`/`localhost` hosts and
origins are served (421 / 403 otherwise), and only GET and HEAD unless `--allow-edits` (403).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from expyrun.browse.local_server import DEFAULT_PORT, is_local_host, is_local_origin, local_server, serve_until_stopped
from expyrun.errors import UsageError

INSTALL_HINT = "pip install 'expyrun[dashboard]'"
_REFERENCE = re.compile(r"\$\{(\w+)(?::-([^}]*))?\}|\$(\w+)")
READ_METHODS = ("GET", "HEAD")  # everything optuna-dashboard's pages need to show a study
EDITS_HINT = "restart it with --allow-edits to edit the study from the dashboard"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


@dataclass(frozen=True)
class StudyLocation:
    """Where the study of a study folder lives."""

    study_name: str
    storage: str  # a journal file path, or a database URL with its references expanded
    shown: str  # the same for people: a database URL without its password

    @property
    def is_journal(self) -> bool:
        return "://" not in self.storage


def locate(folder: Path) -> StudyLocation:
    """The study name and storage of a study run folder; UsageError when it is not one."""
    from expyrun.run.record import RUN_FILE, load_record

    record = load_record(folder)  # None: no run.json; {}: not a JSON object (unreadable, or a list...)
    if not record:
        raise UsageError(
            f"{folder}: not a study folder (no readable {RUN_FILE})",
            "give a study run folder such as outputs/NAME/exp.0",
        )
    section = _optuna_section(folder / "config.yml")
    if section is None:
        trial = record.get("trial")
        if isinstance(trial, dict) and (folder.parent.parent / RUN_FILE).is_file():
            raise UsageError(
                f"{folder}: a trial folder, not a study folder", f"give its study folder {folder.parent.parent}"
            )
        raise UsageError(f"{folder}: not a study folder (its config.yml has no `__optuna__` section)")
    study_name = str(record.get("study") or section.get("study_name") or record.get("name") or "")
    storage = section.get("storage")
    launched_from = Path(str(record.get("cwd") or folder))
    if storage is None:
        linked = folder / "study.journal"
        path = linked.resolve() if linked.is_symlink() or linked.exists() else folder.parent / "study.journal"
        return _journal(study_name, path)
    if not isinstance(storage, str):
        raise UsageError(f"{folder}: `__optuna__.storage` is {storage!r}, not a journal path or a database URL")
    if "://" not in storage:
        return _journal(study_name, launched_from / Path(_expand(storage)).expanduser())
    url = _expand(storage)
    if url.startswith("sqlite"):
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        database = parsed.database
        if not database or database == ":memory:":
            raise UsageError(f"{folder}: the study was kept in an in-memory SQLite database, gone with its process")
        path = launched_from / Path(database).expanduser()
        if not path.is_file():
            raise UsageError(f"{folder}: the study's SQLite database {path} does not exist")
        url = parsed.set(database=str(path)).render_as_string(hide_password=False)
    return StudyLocation(study_name, url, _without_password(url))


def _journal(study_name: str, path: Path) -> StudyLocation:
    if not path.is_file():
        raise UsageError(f"the study's journal file {path} does not exist")
    return StudyLocation(study_name, str(path), str(path))


def _optuna_section(config_file: Path) -> dict[str, Any] | None:
    import yaml

    try:
        config = yaml.load(
            config_file.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        )
    except (OSError, yaml.YAMLError):
        return None
    section = config.get("__optuna__") if isinstance(config, dict) else None
    return section if isinstance(section, dict) else None


def _expand(text: str) -> str:
    """`$NAME`, `${NAME}` and `${NAME:-fallback}` references (a secret stays one in config.yml)
    read from this environment."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if name in os.environ:
            return os.environ[name]
        if match.group(2) is not None:
            return match.group(2)
        raise UsageError(f"the study's storage refers to ${name}, which is not set here", f"export {name}=...")

    return _REFERENCE.sub(value, text)


def _without_password(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _storage(location: StudyLocation) -> Any:
    import optuna

    if location.is_journal:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(location.storage))
    try:
        return optuna.storages.RDBStorage(location.storage, skip_table_creation=True)
    except Exception as error:  # no server, a missing driver, a wrong password: one line
        raise UsageError(f"cannot open the study's storage {location.shown}: {type(error).__name__}: {error}") from None


def guarded(app: WsgiApp, port: int, allow_edits: bool) -> WsgiApp:
    """`app` behind the checks that keep other web sites out (see the module's docstring): a
    `Host` other than 127.0.0.1/localhost (with this port or none) gets 421, an `Origin` of
    another site 403, and, unless `allow_edits`, any method but GET and HEAD 403."""

    def refuse(start_response: Callable[..., Any], status: str, why: str) -> list[bytes]:
        body = f"expyrun dashboard: {why}\n".encode()
        start_response(status, [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]

    def checked(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        host = environ.get("HTTP_HOST", "")
        if not is_local_host(host, port):
            return refuse(start_response, "421 Misdirected Request", "only 127.0.0.1 and localhost are served")
        origin = environ.get("HTTP_ORIGIN")
        if origin is not None and not is_local_origin(origin, port):
            return refuse(start_response, "403 Forbidden", "requests from other web sites are refused")
        if environ.get("REQUEST_METHOD", "GET") not in READ_METHODS and not allow_edits:
            return refuse(start_response, "403 Forbidden", f"the study is served read-only; {EDITS_HINT}")
        return app(environ, start_response)

    return checked


def dashboard(folder: Path, port: int | None, allow_edits: bool = False) -> int:
    """Serve the study of `folder` until Ctrl-C (0) or SIGTERM (143); read-only unless `allow_edits`."""
    try:
        import optuna_dashboard
    except ImportError:
        raise UsageError(f"optuna-dashboard is not installed: {INSTALL_HINT}") from None
    if port is not None and not 1 <= port <= 65535:
        raise UsageError(f"--port {port}: not a port number (1 to 65535)")
    location = locate(folder)
    storage = _storage(location)
    try:
        study_id = storage.get_study_id_from_name(location.study_name)
    except KeyError:
        raise UsageError(f"study {location.study_name!r} is not in its storage {location.shown}") from None
    server = local_server(optuna_dashboard.wsgi(storage), DEFAULT_PORT if port is None else port)
    server.set_app(guarded(server.get_app(), server.server_address[1], allow_edits))
    url = f"http://127.0.0.1:{server.server_address[1]}/dashboard/studies/{study_id}"
    mode = "edits allowed" if allow_edits else "read-only: --allow-edits to edit"
    return serve_until_stopped(
        server, url, f"study {location.study_name!r} ({location.shown}); {mode}; Ctrl-C stops the dashboard"
    )
