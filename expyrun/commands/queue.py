"""`expyrun queue [list] | cancel RUN... | clear`: what waits in the machine's queue, and taking it out (SPEC 13)."""

from __future__ import annotations

import sys
from pathlib import Path

from expyrun import console
from expyrun.errors import UsageError

SUBCOMMANDS = ("list", "cancel", "clear")


def main(args: list[str]) -> int:
    """List the queue (default), cancel named queued runs, or clear every queued run."""
    command = args[0] if args else "list"
    rest = args[1:]
    if command in ("-h", "--help"):
        sys.stdout.write("usage: expyrun queue [list] | cancel RUN... | clear\n")
        return 0
    if command not in SUBCOMMANDS:
        from expyrun.commands.suggest import misspelt

        close = misspelt(command, SUBCOMMANDS)
        hint = f"did you mean `expyrun queue {close}`?" if close else "expyrun queue [list] | cancel RUN... | clear"
        raise UsageError(f"expyrun queue: unknown command `{command}`", hint)
    from expyrun.queue.store import entries, queue_folder

    folder = queue_folder()
    if command == "list":
        if rest:
            raise UsageError(f"expyrun queue list: unexpected `{rest[0]}`")
        return _list(folder)
    if command == "clear":
        if rest:
            raise UsageError(
                f"expyrun queue clear: unexpected `{rest[0]}`", "to remove some runs: expyrun queue cancel RUN..."
            )
        return _cancel(folder, [entry.run_dir for entry in entries(folder)], every=True)
    if not rest:
        raise UsageError("expyrun queue cancel: name the run folders to cancel", "expyrun queue cancel RUN...")
    return _cancel(folder, [Path(run).absolute() for run in rest], every=False)


def _list(folder: Path) -> int:
    """One line per entry, in execution order: priority, state, waiting since, worker, run folder."""
    from expyrun.queue.store import entries, is_held
    from expyrun.run.record import load_record

    rows = []
    for entry in entries(folder):
        running = is_held(entry)
        record = load_record(entry.run_dir) or {}
        worker = f"pid {record.get('pid')} on {record.get('host')}" if running and record.get("pid") else "-"
        state = "running" if running else "queued"
        attempt = int(record.get("attempt") or 0)
        if attempt and not running:
            state = f"queued (attempt {attempt + 1})"
        rows.append((str(entry.priority), state, entry.queued_at or "-", worker, console.visible(entry.run_dir, True)))
    if not rows:
        console.info(f"the queue is empty ({folder})")
        return 0
    header = ("priority", "state", "since", "worker", "run")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        sys.stdout.write("  ".join([*cells, row[-1]]) + "\n")
    return 0


def _cancel(folder: Path, runs: list[Path], every: bool) -> int:
    """Cancel queued runs: each recorded `interrupted` ("cancelled") and its entry removed. A named run
    that is not queued is refused before anything changes; a running one is left to its worker."""
    from expyrun.queue.store import entries, try_claim

    by_run = {entry.run_dir.absolute(): entry for entry in entries(folder)}
    missing = [run for run in runs if run not in by_run]
    if missing:
        raise UsageError(f"expyrun queue cancel: {missing[0]} is not in the queue ({folder})", "see expyrun queue")
    claims = []
    busy = []
    for run in runs:
        claim = try_claim(by_run[run])
        if claim is None:
            busy.append(run)
        else:
            claims.append(claim)
    if busy and not every:
        for claim in claims:
            claim.release()
        raise UsageError(f"expyrun queue cancel: {busy[0]} is executing: not cancelled",
                         "stop its worker (Ctrl-C) to put it back in the queue")  # fmt: skip
    for claim in claims:
        _record_cancelled(claim.entry.run_dir)
        claim.done()
        sys.stdout.write(f"{claim.entry.run_dir}\n")
    console.info(f"cancelled {len(claims)} queued run{'s' if len(claims) != 1 else ''}"
                 + (f"; {len(busy)} executing left to their workers" if busy else ""))  # fmt: skip
    return 0


def _record_cancelled(run_dir: Path) -> None:
    from expyrun.execute.slurm_node import update_sweep
    from expyrun.run.record import load_record, mark_finished, write_record
    from expyrun.run.status import ACTIVE, Status

    record = load_record(run_dir)
    if not record or record.get("status") not in ACTIVE:
        return
    exception = {"type": "Cancelled", "message": "cancelled from the queue"}
    mark_finished(record, Status.INTERRUPTED, None, exception=exception)
    write_record(run_dir, record)
    update_sweep(record, Status.INTERRUPTED, None, exception)
