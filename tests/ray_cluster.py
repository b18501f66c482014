"""A throwaway one-node Ray head for tests: `ray start --head` on 127.0.0.1 with free ports, a
private temp dir and HOME, 2 CPUs, no dashboard; stopped by pid (never `ray stop`, which stops
every Ray cluster of the user).

Every connection stays on loopback (`/work/shared/notes/ray-test-cluster.md`): the head and every
driver get `ENV` (no usage stats, the report URL pointed at a closed local port), and `HOME` holds
a `ray_bootstrap_config.yaml` with `provider: {type: local}` so that nothing probes the cloud
metadata service. Costs ~3 s to start, ~6 s more until it accepts a driver, ~620 MB RSS.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_USAGE_STATS_REPORT_URL": "http://127.0.0.1:9/",
}
READY_S = 90.0


def unavailable() -> str | None:
    """Why a head cannot be started here, or None when it can."""
    ray = Path(sys.executable).parent / "ray"
    if not ray.exists():
        return "Ray is not installed: run `bash .ci/install` (pip install 'expyrun[ray]')"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RayHead:
    """One head node; `env` is what a driver (expyrun) needs to reach it and stay on loopback."""

    def __init__(self, num_cpus: int = 2, num_gpus: int = 0, dashboard: bool = False) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))  # socket paths stay under 107 bytes
        self.home = self.folder / "home"
        self.home.mkdir()
        (self.home / "ray_bootstrap_config.yaml").write_text("provider: {type: local}\n", encoding="utf-8")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.dashboard = f"127.0.0.1:{free_port()}" if dashboard else None  # the job server (wait: false)

    @property
    def env(self) -> dict[str, str]:
        return {**ENV, "HOME": str(self.home), "RAY_ADDRESS": self.address}

    def start(self) -> RayHead:
        ports = {
            f"--{name}": str(free_port())
            for name in (
                "dashboard-agent-listen-port",
                "dashboard-agent-grpc-port",
                "runtime-env-agent-port",
                "metrics-export-port",
                "node-manager-port",
                "object-manager-port",
            )
        }
        command = [
            str(Path(sys.executable).parent / "ray"), "start", "--head", "--node-ip-address", "127.0.0.1",
            "--port", str(self.port), "--num-cpus", str(self.num_cpus), "--num-gpus", str(self.num_gpus),
            "--disable-usage-stats", "--temp-dir", str(self.folder / "t"),
            "--object-store-memory", "104857600", *[part for item in ports.items() for part in item],
        ]  # fmt: skip
        if self.dashboard is None:
            command += ["--include-dashboard", "false"]
        else:
            host, _, port = self.dashboard.partition(":")
            command += ["--include-dashboard", "true", "--dashboard-host", host, "--dashboard-port", port]
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "EXPYRUN_", "RAY_"))}
        environment.update(self.env)
        environment.pop("RAY_ADDRESS")
        started = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=READY_S,
                                 check=False)  # fmt: skip
        if started.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed ({started.returncode}): {started.stderr[-2000:]}")
        self._wait_ready(environment)
        return self

    def _wait_ready(self, environment: dict[str, str]) -> None:
        """Until a driver connects and sees the CPUs (the head accepts one 6-8 s after `ray start`)."""
        probe = (
            f"import ray; ray.init(address={self.address!r}, logging_level='ERROR', log_to_driver=False); "
            "print(ray.cluster_resources().get('CPU'))"
        )
        deadline = time.monotonic() + READY_S
        seen = ""
        while time.monotonic() < deadline:
            try:
                answer = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True,
                                        text=True, timeout=60, check=False)  # fmt: skip
            except subprocess.TimeoutExpired:
                seen = "a driver did not connect in 60 s"
                continue
            if answer.returncode == 0 and answer.stdout.strip():
                return
            seen = answer.stderr[-500:]
        self.stop()
        raise RuntimeError(f"the Ray head at {self.address} did not accept a driver in {READY_S:g} s: {seen}")

    def pids(self) -> list[int]:
        """The head's processes (their command lines name the private temp dir) and their descendants."""
        found: dict[int, tuple[int, str]] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                stat = (entry / "stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                found[int(entry.name)] = (parent, cmdline)
        mine = {pid for pid, (_, cmdline) in found.items() if str(self.folder) in cmdline}
        grew = True
        while grew:
            more = {pid for pid, (parent, _) in found.items() if parent in mine} - mine
            mine |= more
            grew = bool(more)
        return sorted(mine)

    def stop(self) -> None:
        """Raylet side first, then the monitor, then the GCS (signalled together they can hang)."""
        order = ("raylet", "monitor.py", "gcs_server")
        pids = self.pids()
        commands = {pid: _cmdline(pid) for pid in pids}
        rest = [pid for pid in pids if not any(name in commands[pid] for name in order)]
        groups = [rest] + [[pid for pid in pids if name in commands[pid]] for name in order]
        for group in groups:
            for pid in group:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            _wait_gone(group, 10.0)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.folder, ignore_errors=True)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait_gone(pids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in pids):
            return
        time.sleep(0.05)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"
