"""GPU leases across launches: a GPU id given to a run is held machine-wide until the run's processes are gone.

Why: two `expyrun` commands with `gpus: [0, 1]` each hand out GPU 0 to their first run; nothing
coordinated launches. A lease is an exclusive `fcntl.flock` on one file per GPU id in the lease
folder (`$EXPYRUN_GPU_LEASES`, default `~/.expyrun/gpu-leases/HOST`: per user, and per machine
where a home folder is shared). The kernel releases a
flock when the last descriptor of its open file is closed, so a lease ends with the processes that
hold it, however they end (SIGKILL included): no stale lease to clean up, no daemon.

Who holds it: the launcher takes it (`try_lease`), and the run child forked for it keeps a copy of
the descriptor (inheritable, so a command run's `exec`ed program and its children hold it too);
every other lease's descriptor is closed in a forked child (`os.register_at_fork`), so a run never
holds another run's GPU, nor a tee any. The lease ends when the launcher has released it and the
run's processes are gone, whatever happened to the launcher.

Costs: one `open` + `flock` + a short write to take a lease, one `close` to release it (well under
1 ms; benchmarks/bench_queue.py). Nothing is imported beyond `fcntl`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

ENV_FOLDER = "EXPYRUN_GPU_LEASES"

_open_leases: dict[int, Lease] = {}  # fd -> lease, in this process
_handing: list[int] = []  # the fd the next forked child keeps (set by `handing_to_child`)


def lease_folder() -> Path:
    """Where the lease files are: `$EXPYRUN_GPU_LEASES`, else `~/.expyrun/gpu-leases/HOST` (GPU 0 of
    one machine is not GPU 0 of another that shares the home folder)."""
    configured = os.environ.get(ENV_FOLDER)
    folder = Path(configured) if configured else Path.home() / ".expyrun" / "gpu-leases" / os.uname().nodename
    job = os.environ.get("SLURM_JOB_ID")
    # inside a Slurm job, ids count the job's own GPUs ("0" of one job is not "0" of another): the
    # job's launches share leases among themselves only
    return folder / f"slurm-{job}" if job else folder


class Lease:
    """One GPU id held by this process (and, once handed over, by a run's processes)."""

    def __init__(self, gpu: str, fd: int, path: Path) -> None:
        self.gpu = gpu
        self.fd: int | None = fd
        self.path = path

    def describe(self, holder: str) -> None:
        """Say who holds it (read by a launch waiting for this GPU): `holder` replaces what was there."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, holder.encode("utf-8", "replace"), 0)

    def release(self) -> None:
        """This process lets go; the lease ends once the run's processes holding a copy are gone too."""
        if self.fd is None:
            return
        _open_leases.pop(self.fd, None)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None


def try_lease(gpu: str, holder: str = "") -> Lease | None:
    """Take GPU `gpu`'s lease now, or None when another process holds it (never waits)."""
    folder = lease_folder()
    path = folder / f"gpu-{gpu.replace('/', '_')}.lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except FileNotFoundError:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    lease = Lease(gpu, fd, path)
    _open_leases[fd] = lease
    lease.describe(holder or f"pid {os.getpid()}")
    return lease


def holder_of(gpu: str) -> str:
    """Who holds GPU `gpu`'s lease, as its holder wrote it ("" when unknown)."""
    try:
        return (lease_folder() / f"gpu-{gpu.replace('/', '_')}.lock").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def waiting_message(gpus: list[str]) -> str:
    """The line a launch prints while every id it may use is leased by others."""
    held = "; ".join(f"GPU {gpu} held by {holder_of(gpu) or 'another process'}" for gpu in gpus)
    return f"waiting for a GPU lease ({lease_folder()}): {held}"


@contextlib.contextmanager
def handing_to_child(lease: Lease | None) -> Iterator[None]:
    """Within this block, a forked child keeps `lease`'s descriptor (inheritable across `exec`) and
    closes every other lease's; outside it, a forked child closes them all."""
    if lease is None or lease.fd is None:
        yield
        return
    fd = lease.fd
    _handing.append(fd)
    try:
        yield
    finally:
        if fd in _handing:  # (a forked child that leaves the block finds the list emptied)
            _handing.remove(fd)


def _in_child() -> None:
    keep = _handing[-1] if _handing else None
    for fd in list(_open_leases):
        if fd == keep:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, True)
            continue
        with contextlib.suppress(OSError):
            os.close(fd)
    _open_leases.clear()
    _handing.clear()


os.register_at_fork(after_in_child=_in_child)
