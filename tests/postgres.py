"""A throwaway PostgreSQL 15 server for tests: its own cluster in a temp folder, on a free
loopback port, run as the `postgres` user when the tests run as root (the server refuses root)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

BIN = Path(os.environ.get("EXPYRUN_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.port = _free_port()
        self.as_root = os.geteuid() == 0

    def _run(self, *command: str) -> subprocess.CompletedProcess[str]:
        prefix = ["runuser", "-u", "postgres", "--"] if self.as_root else []
        return subprocess.run([*prefix, *command], capture_output=True, text=True, check=True, timeout=120)

    def start(self) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.as_root:
            shutil.chown(self.folder, "postgres", "postgres")
            self.folder.chmod(0o700)
        self._run(str(BIN / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres", "--no-sync")
        self._run(
            str(BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.folder / "server.log"),
            "-w",
            "start",
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off -c max_connections=200",
        )
        for _ in range(100):
            ready = subprocess.run(
                [str(BIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True, check=False
            )
            if ready.returncode == 0:
                break
            time.sleep(0.1)
        self._run(str(BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "expyrun")
        return f"postgresql://postgres@127.0.0.1:{self.port}/expyrun"

    def stop(self) -> None:
        subprocess.run(
            [*(["runuser", "-u", "postgres", "--"] if self.as_root else []), str(BIN / "pg_ctl"), "-D",
             str(self.data), "-m", "immediate", "-w", "stop"],
            capture_output=True, check=False, timeout=60,
        )  # fmt: skip


def available() -> str | None:
    """None when a server can be started here, else the reason it cannot."""
    if not (BIN / "initdb").exists():
        return f"PostgreSQL server binaries not found in {BIN}"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "no `postgres` user to run the server as (it refuses to run as root)"
    return None
