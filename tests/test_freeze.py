"""Frozen requirements: listed in-process from the interpreter's metadata, PEP 610 aware."""

from __future__ import annotations

import json
import sys

from expyrun.run.freeze import frozen_requirements, requirement_drift, strip_credentials


def dist(site, name, version, direct=None):
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nName: fake\n")
    if direct is not None:
        (info / "direct_url.json").write_text(json.dumps(direct))


def test_pinned_vcs_url_and_editable_distributions(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist(site, "Plain_Pkg", "1.2.3")
    dist(
        site,
        "fromgit",
        "0.1",
        {"url": "https://user:s3cret@github.com/o/r.git", "vcs_info": {"vcs": "git", "commit_id": "abc123"}},
    )
    dist(site, "fromurl", "2.0", {"url": "https://tok@files.example.com/fromurl-2.0.tar.gz", "archive_info": {}})
    dist(site, "mine", "0.0.1", {"url": "file:///home/me/mine", "dir_info": {"editable": True}})
    monkeypatch.setattr(sys, "path", [str(site)])
    lines = frozen_requirements()
    assert lines == [
        "fromgit @ git+https://github.com/o/r.git@abc123",
        "fromurl @ https://files.example.com/fromurl-2.0.tar.gz",
        "-e file:///home/me/mine  # editable mine==0.0.1",
        "Plain_Pkg==1.2.3",
    ]
    assert not any("s3cret" in line or "tok@" in line for line in lines)


def test_first_distribution_on_the_path_wins(tmp_path, monkeypatch):
    dist(tmp_path / "a", "pkg", "2.0")
    dist(tmp_path / "b", "pkg", "1.0")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "a"), str(tmp_path / "b")])
    assert frozen_requirements() == ["pkg==2.0"]


def test_strip_credentials_keeps_ssh_user():
    assert strip_credentials("git@github.com:o/r.git") == "git@github.com:o/r.git"
    assert strip_credentials("ssh://git@host/r.git") == "ssh://git@host/r.git"
    assert strip_credentials("https://a:b@host/x") == "https://host/x"


def test_drift_lists_added_removed_and_changed(tmp_path, monkeypatch):
    dist(tmp_path / "site", "same", "1.0")
    dist(tmp_path / "site", "newer", "2.0")
    dist(tmp_path / "site", "added", "1.0")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site")])
    stored = tmp_path / "frozen.txt"
    stored.write_text("same==1.0\nnewer==1.0\nremoved==3.0\n")
    assert requirement_drift(stored) == ["+ added==1.0", "~ newer==1.0 -> newer==2.0", "- removed==3.0"]
