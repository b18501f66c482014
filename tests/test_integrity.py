"""Data integrity: the snapshot store, a full disk, folders removed under a launch, odd run names."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import RUN_SECTION, run_expyrun, write


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def store_files(output_dir: Path) -> list[Path]:
    store = output_dir / ".expyrun" / "store"
    return [p for p in store.rglob("*") if p.is_file() and p.name != "index.json"]


@pytest.fixture
def small_disk(tmp_path: Path):
    """A tmpfs of a few hundred KB mounted for the test (needs root; skipped where mounting is impossible)."""
    mounted: list[Path] = []

    def mount(size_kb: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(point)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def test_store_holds_only_what_its_names_say_while_a_file_is_swapped(project):
    """An editor saving (temp file + rename) during launches never puts one version under another's hash."""
    versions = [bytes([i]) * (3 << 20) for i in (1, 2)]
    data = project / "pkg" / "weights.bin"
    data.write_bytes(versions[0])
    write(project / "c.yml", RUN_SECTION)
    stop = threading.Event()

    def swap() -> None:
        turn = 0
        while not stop.is_set():
            turn += 1
            temporary = project / "pkg" / f".weights.{turn}.tmp"
            temporary.write_bytes(versions[turn % 2])
            os.replace(temporary, data)

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        for _ in range(8):
            assert run_expyrun(["c.yml"], project).returncode == 0
    finally:
        stop.set()
        swapper.join(timeout=30)
    data.write_bytes(versions[0])  # now stable: later launches must get exactly these bytes
    for _ in range(2):
        assert run_expyrun(["c.yml"], project).returncode == 0
    outputs = project / "outputs"
    for stored in store_files(outputs):
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == stored.name.split(".")[0], stored
    runs = sorted((outputs / "demo").iterdir(), key=lambda p: int(p.name.split(".")[1]))
    for run_dir in runs:
        assert (run_dir / "pkg" / "weights.bin").read_bytes() in versions
    assert all((run_dir / "pkg" / "weights.bin").read_bytes() == versions[0] for run_dir in runs[-2:])


def test_disk_full_before_the_run_leaves_nothing(project, small_disk):
    disk = small_disk(256)
    (project / "pkg" / "data.bin").write_bytes(os.urandom(1 << 20))
    write(project / "c.yml", RUN_SECTION.replace("outputs", str(disk / "outputs")))
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0] and "Traceback" not in result.stderr
    assert list(disk.iterdir()) == []


def test_disk_full_during_the_run_keeps_the_run_and_the_terminal(project, small_disk):
    disk = small_disk(512)
    write(
        project / "pkg" / "main.py",
        """\
        def main(name, config):
            for i in range(40000):
                print(f"line {i:06d} " + "x" * 40)
            return 42
        """,
    )
    write(project / "c.yml", RUN_SECTION.replace("outputs", str(disk / "outputs")))
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 40000 and "line 039999" in result.stdout
    assert "outputs.log cannot be written (No space left on device)" in result.stderr
    record = run_json(disk / "outputs" / "demo" / "exp.0")
    assert record["status"] == "completed" and record["result"] == 42
    assert "No space left on device" in record["log_error"]


def test_launches_while_the_store_is_deleted(project):
    write(project / "pkg" / "extra.py", "X = 1\n" * 2000)
    write(project / "c.yml", RUN_SECTION)
    stop = threading.Event()
    store = project / "outputs" / ".expyrun"

    def delete() -> None:
        while not stop.is_set():
            subprocess.run(["rm", "-rf", str(store)], check=False)
            time.sleep(0.01)

    deleter = threading.Thread(target=delete)
    deleter.start()
    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda _: run_expyrun(["c.yml"], project), range(16)))
    finally:
        stop.set()
        deleter.join(timeout=30)
    assert [r.returncode for r in results] == [0] * 16, [r.stderr for r in results if r.returncode]
    for run_dir in (project / "outputs" / "demo").iterdir():
        assert (run_dir / "pkg" / "extra.py").read_text() == "X = 1\n" * 2000


def test_run_folder_removed_during_the_run_is_one_line(project):
    write(
        project / "pkg" / "main.py",
        """\
        import os, shutil, time
        def main(name, config):
            run_dir = os.environ["EXPYRUN_RUN_DIR"]
            deadline = time.monotonic() + 30  # the launcher records the environment meanwhile
            while not os.path.exists(os.path.join(run_dir, "frozen_requirements.txt")) and time.monotonic() < deadline:
                time.sleep(0.01)
            while os.path.exists(run_dir) and time.monotonic() < deadline:  # the launcher may be writing in it
                shutil.rmtree(run_dir, ignore_errors=True)
            return 1
        """,
    )
    write(project / "c.yml", RUN_SECTION)
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 0
    assert "cannot write" in result.stderr and "run.json" in result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr


def test_output_folder_inside_the_package_is_not_snapshotted(project):
    write(project / "c.yml", RUN_SECTION.replace("outputs", "pkg/outputs"))
    for _ in range(3):
        result = run_expyrun(["c.yml"], project)
        assert result.returncode == 0, result.stderr
    run_dir = project / "pkg" / "outputs" / "demo" / "exp.2"
    assert sorted(p.name for p in (run_dir / "pkg").iterdir()) == ["__init__.py", "main.py"]


def test_symlink_loop_through_an_outside_folder(project):
    outside = project / "outside"
    write(outside / "data.txt", "hello\n")
    (outside / "again").symlink_to(outside)
    (project / "pkg" / "ext").symlink_to(outside)
    write(project / "c.yml", RUN_SECTION)
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 0, result.stderr
    run_dir = project / "outputs" / "demo" / "exp.0"
    assert (run_dir / "pkg" / "ext" / "data.txt").read_text() == "hello\n"
    assert run_json(run_dir)["snapshot"]["loops"] == ["pkg/ext/again"]
    assert "pkg/ext/again links back to a folder being copied" in result.stderr


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        (".expyrun/store/x", "may not start with `.expyrun/`"),
        ("deep/" + "n" * 300, "a component of 300 bytes"),
    ],
)
def test_run_names_that_would_hide_or_fail(project, name, fragment):
    write(project / "c.yml", RUN_SECTION.replace("demo", name))
    result = run_expyrun(["c.yml"], project)
    assert result.returncode == 2 and fragment in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "c.yml:3" in result.stderr
    assert not (project / "outputs").exists()
