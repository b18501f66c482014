"""A throwaway one-node Slurm cluster for tests: munged, slurmctld and slurmd started as daemons
from a `slurm.conf` in a temp folder, on private loopback ports, stopped by their pids.

It runs as root without cgroups (`proctrack/linuxproc`, `task/none`) and without accounting (no
`slurmdbd`, so no `sacct`: `squeue` answers while a job is known, and `MinJobAge` keeps finished
jobs known for an hour). Its own munge socket keeps it apart from any munged already running.
Every Slurm command needs `SLURM_CONF` (see `env`). Requeued jobs may start again after
`cred_expire` seconds (5 here, 120 by default), which is what keeps preemption tests short.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel", "sinfo")
INSTALL_HINT = (
    "Slurm is not installed: run `bash .ci/install` (apt-get install slurmd slurmctld slurm-client munge, as root)"
)


def unavailable() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    missing = [name for name in BINARIES if shutil.which(name, path=_path()) is None]
    if missing:
        return f"{INSTALL_HINT}; missing: {', '.join(missing)}"
    if os.geteuid() != 0:
        return "the test Slurm cluster runs its daemons as root (SlurmUser=root): run the tests as root"
    try:
        import pwd

        pwd.getpwnam("munge")
    except KeyError:
        return "no `munge` user to run munged as (the munge package creates it)"
    return None


def _path() -> str:
    return os.environ.get("PATH", "") + ":/usr/sbin:/sbin"


def _free_ports(count: int) -> list[int]:
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


class SlurmCluster:
    """One controller and one node (this machine, `cpus` CPUs) in `folder`; `env` is what a Slurm
    command (or expyrun submitting to it) needs on top of the caller's environment."""

    def __init__(self, folder: Path | None = None, cpus: int | None = None) -> None:
        # Not under pytest's temp folder: its parents are private to root and munged runs as `munge`.
        self.folder = Path(folder or tempfile.mkdtemp(prefix="expyrun-slurm-"))
        self.folder.chmod(0o755)
        self.cpus = cpus or os.cpu_count() or 1
        self.node = socket.gethostname().split(".")[0]
        self.conf = self.folder / "slurm.conf"
        self.munge_dir = self.folder / "munge"
        self.socket = self.munge_dir / "munge.socket"
        self.pid_files = {
            "munged": self.munge_dir / "munged.pid",
            "slurmctld": self.folder / "slurmctld.pid",
            "slurmd": self.folder / "slurmd.pid",
        }
        self.env = {"SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 30) -> SlurmCluster:
        self._start_munge()
        self._write_conf()
        for daemon in ("slurmctld", "slurmd"):
            self._run([shutil.which(daemon, path=_path()) or daemon, "-f", str(self.conf)])
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            answer = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                                    env={**os.environ, **self.env}, check=False, timeout=10)  # fmt: skip
            state = answer.stdout.strip() or answer.stderr.strip()
            if state == "idle":
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the test Slurm cluster did not become idle in {timeout:g} s (sinfo: {state!r}); "
                           f"logs in {self.folder}")  # fmt: skip

    def _start_munge(self) -> None:
        self.munge_dir.mkdir()
        shutil.chown(self.munge_dir, "munge", "munge")
        self.munge_dir.chmod(0o755)  # munged wants the socket folder searchable by all
        self._run([
            "runuser", "-u", "munge", "--", shutil.which("munged", path=_path()) or "munged",
            f"--socket={self.socket}", f"--pid-file={self.pid_files['munged']}",
            f"--log-file={self.munge_dir / 'munged.log'}", f"--seed-file={self.munge_dir / 'munged.seed'}",
        ])  # fmt: skip

    def _write_conf(self) -> None:
        controller_port, node_port = _free_ports(2)
        folder = self.folder
        (folder / "state").mkdir()
        (folder / "spool").mkdir()
        self.conf.write_text(
            f"""\
ClusterName=expyrun-test
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={controller_port}
SlurmdPort={node_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.socket},cred_expire=5
StateSaveLocation={folder / "state"}
SlurmdSpoolDir={folder / "spool"}
SlurmctldPidFile={self.pid_files["slurmctld"]}
SlurmdPidFile={self.pid_files["slurmd"]}
SlurmctldLogFile={folder / "slurmctld.log"}
SlurmdLogFile={folder / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=1
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=3600
InactiveLimit=0
SlurmdTimeout=300
MaxArraySize=10001
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} State=UNKNOWN
PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""",
            encoding="utf-8",
        )

    def _run(self, command: list[str]) -> None:
        """Start a daemon (it forks into the background and writes its pid file)."""
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **self.env},
                                check=False, timeout=30)  # fmt: skip
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")

    def pids(self) -> dict[str, int]:
        found = {}
        for name, path in self.pid_files.items():
            try:
                found[name] = int(path.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return found

    def stop(self, timeout: float = 15) -> None:
        """Stop the daemons by their pids (node, controller, then munged), SIGKILL after `timeout`."""
        pids = self.pids()
        for name in ("slurmd", "slurmctld", "munged"):
            pid = pids.get(name)
            if pid is None:
                continue
            _signal(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                _signal(pid, signal.SIGKILL)

    def command(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm command against this cluster."""
        result = subprocess.run(list(args), capture_output=True, text=True, env={**os.environ, **self.env},
                                check=False, timeout=timeout)  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def job_state(self, job: str) -> str:
        """The job's state as squeue shows it (`COMPLETED`, `PENDING`...), or '' when unknown."""
        answer = self.command("squeue", "-h", "-t", "all", "-j", job, "-o", "%T", check=False)
        return answer.stdout.strip()


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"
