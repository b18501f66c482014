"""`expyrun dashboard` against hostile requests, over real HTTP to the real server: a web page in
the user's browser can reach 127.0.0.1 (by DNS rebinding, with its own name in `Host`, or from its
own origin), so the study is served read-only unless `--allow-edits`, to local names only."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from test_dashboard import STUDY_NAME, Dashboard, free_port, make_study


@pytest.fixture
def dashboards() -> Iterator[list[Dashboard]]:
    """Dashboards a test started, killed at its end whatever happened."""
    started: list[Dashboard] = []
    yield started
    for dashboard in started:
        dashboard.close()


def request(
    dashboard: Dashboard, method: str, path: str, host: str | None = None, body: dict | None = None, **headers: str
) -> tuple[int, bytes]:
    """One request with the given `Host` (the server's own address by default); status and body."""
    port = int(dashboard.base.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        sent = {"Host": host or f"127.0.0.1:{port}", **{k.replace("_", "-"): v for k, v in headers.items()}}
        data = None if body is None else json.dumps(body).encode()
        if data is not None:
            sent["Content-Type"] = "application/json"
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def study_names(study_dir: Path) -> list[str]:
    """The studies in the study folder's journal, read by Optuna itself (not through the dashboard)."""
    from optuna.storages.journal import JournalFileBackend

    journal = study_dir.parent / "study.journal"
    return optuna.study.get_all_study_names(optuna.storages.JournalStorage(JournalFileBackend(str(journal))))


def start(project: Path, dashboards: list[Dashboard], *flags: str) -> tuple[Dashboard, Path, int]:
    study_dir = make_study(project)
    dashboard = Dashboard([str(study_dir), "--port", str(free_port()), *flags], project)
    dashboards.append(dashboard)
    study_id = json.loads(request(dashboard, "GET", "/api/studies")[1])["study_summaries"][0]["study_id"]
    return dashboard, study_dir, study_id


def test_the_dashboard_is_read_only_unless_edits_are_allowed(project, dashboards):
    dashboard, study_dir, study_id = start(project, dashboards)
    for method, path, body in [
        ("DELETE", f"/api/studies/{study_id}", None),
        ("POST", f"/api/studies/{study_id}/rename", {"study_name": "renamed"}),
        ("PUT", f"/api/studies/{study_id}/note", {"version": 1, "body": "scribbled"}),
        ("POST", "/api/studies", {"study_name": "another", "directions": ["minimize"]}),
    ]:
        status, answer = request(dashboard, method, path, body=body)
        assert status == 403, (method, path, status, answer)
        assert b"read-only" in answer and b"--allow-edits" in answer, answer
    assert study_names(study_dir) == [STUDY_NAME]
    status, answer = request(dashboard, "GET", f"/api/studies/{study_id}")
    assert status == 200 and len(json.loads(answer)["trials"]) == 3
    assert request(dashboard, "HEAD", dashboard.url.split(dashboard.base, 1)[1])[0] == 200
    code, stderr = dashboard.interrupt()
    assert code == 0 and "read-only" in stderr, stderr


def test_a_request_naming_another_host_is_refused_even_with_edits_allowed(project, dashboards):
    dashboard, study_dir, study_id = start(project, dashboards, "--allow-edits")
    port = int(dashboard.base.rsplit(":", 1)[1])
    for host in ["attacker.example", f"attacker.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1.nip.io", ""]:
        for method in ("GET", "DELETE"):
            status, answer = request(dashboard, method, f"/api/studies/{study_id}", host=host or " ")
            assert status in (403, 421), (host, method, status, answer)
    assert study_names(study_dir) == [STUDY_NAME]
    for host in ["127.0.0.1", f"127.0.0.1:{port}", "localhost", f"localhost:{port}", f"LOCALHOST:{port}"]:
        status, answer = request(dashboard, "GET", f"/api/studies/{study_id}", host=host)
        assert status == 200 and json.loads(answer)["name"] == STUDY_NAME, (host, status, answer)


def test_edits_allowed_still_refuse_requests_sent_by_other_web_sites(project, dashboards):
    dashboard, study_dir, study_id = start(project, dashboards, "--allow-edits")
    port = int(dashboard.base.rsplit(":", 1)[1])
    for origin in ["http://attacker.example", f"http://attacker.example:{port}", "null"]:
        status, answer = request(dashboard, "DELETE", f"/api/studies/{study_id}", Origin=origin)
        assert status == 403 and b"other web sites" in answer, (origin, status, answer)
    assert study_names(study_dir) == [STUDY_NAME]
    note = {"version": 1, "body": "checked by hand"}
    status, answer = request(dashboard, "PUT", f"/api/studies/{study_id}/note", body=note, Origin=dashboard.base)
    assert status == 204, answer
    assert json.loads(request(dashboard, "GET", f"/api/studies/{study_id}")[1])["note"]["body"] == "checked by hand"
    assert request(dashboard, "DELETE", f"/api/studies/{study_id}", host=f"localhost:{port}")[0] == 204
    assert study_names(study_dir) == []
    code, stderr = dashboard.interrupt()
    assert code == 0 and "edits allowed" in stderr, stderr
