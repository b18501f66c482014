"""The interpreter's exit steps, done by a run process whose entry point returned, bounded in time.

When `main` returns, plain Python runs `threading._shutdown` (first the hooks libraries register with
`threading._register_atexit`: `concurrent.futures` and joblib/loky stop their pools' threads and
processes there; then it joins every non-daemon thread), then the `atexit` functions, and libc's
`exit` flushes C stdio. A run process ends with `os._exit` (a forked run child must not run the
launcher's teardown; the bootstrap must exit with its own status), so it does these steps itself,
or a module-level `ThreadPoolExecutor` or `Parallel(n_jobs=2)` keeps it alive for ever.

Unlike plain Python, it never waits for a thread without a bound: the exit hooks and the threads
get `grace_s` seconds together (`EXPYRUN_EXIT_GRACE`, 30 by default); the threads still running
then are named in a warning on stderr (the run's log) and end with the process. The `atexit`
functions then run as in plain Python: they finish work the run asked for (an upload, a flush).

Only the standard library, and Python 3.9 syntax: the `__python__` bootstrap carries this source.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time

GRACE_VARIABLE = "EXPYRUN_EXIT_GRACE"
DEFAULT_GRACE_S = 30.0


def exit_grace() -> float:
    """Seconds the exit hooks and threads get: `EXPYRUN_EXIT_GRACE` when it is a number >= 0."""
    try:
        grace = float(os.environ.get(GRACE_VARIABLE, ""))
    except ValueError:
        return DEFAULT_GRACE_S
    return grace if 0 <= grace < float("inf") else DEFAULT_GRACE_S  # NaN fails both


def shut_down(grace_s: float) -> list[str]:
    """Plain Python's exit steps, threads waited for at most `grace_s` seconds; returns the names of
    the threads left running (already named in a warning on stderr)."""
    deadline = time.monotonic() + grace_s
    _run_threading_hooks(deadline)
    left = [thread.name for thread in _join_threads(deadline)]
    if left:
        names = ", ".join(repr(name) for name in left)
        _write_stderr(
            f"expyrun: warning: the entry point returned, but {len(left)} thread(s) still ran {grace_s:g} s later and "
            f"were not waited for: {names} (join them, or make them daemon threads; {GRACE_VARIABLE} sets the wait)\n"
        )
    atexit._run_exitfuncs()
    flush_all()
    return left


def _run_threading_hooks(deadline: float) -> None:
    """`threading._register_atexit` hooks, last registered first (as `threading._shutdown`), in a
    helper thread: one of them may join a pool thread that never ends."""
    hooks = list(getattr(threading, "_threading_atexits", []))
    if hasattr(threading, "_SHUTTING_DOWN"):  # no new hooks from now on, as at interpreter exit
        threading._SHUTTING_DOWN = True
    if not hooks:
        return

    def call_hooks() -> None:
        for hook in reversed(hooks):
            try:
                hook()
            except Exception:  # as the interpreter does: say so and go on
                import traceback  # only then: a couple of milliseconds of every run's start

                traceback.print_exc()

    helper = threading.Thread(target=call_hooks, name="expyrun-exit-hooks", daemon=True)
    helper.start()
    helper.join(max(0.0, deadline - time.monotonic()))


def _join_threads(deadline: float) -> list[threading.Thread]:
    """Join the non-daemon threads (new ones too) until `deadline`; returns those still alive."""
    me, main = threading.current_thread(), threading.main_thread()
    while True:
        waiting = [t for t in threading.enumerate() if t not in (me, main) and not t.daemon and t.is_alive()]
        if not waiting:
            return []
        for thread in waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                return [t for t in waiting if t.is_alive()]
            thread.join(left)


def _write_stderr(text: str) -> None:
    with contextlib.suppress(Exception):
        sys.stderr.write(text)
        sys.stderr.flush()


def flush_all() -> None:
    """Flush Python's streams and C `stdio` buffers: `os._exit` skips both, and a C extension's
    `printf` into a pipe sits in a block buffer until libc's exit would have flushed it.

    Only native code fills C buffers, so libc is asked (through ctypes, a few milliseconds to
    import) only when an extension module or ctypes was loaded since the process started.
    """
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(ValueError, OSError, AttributeError):
            stream.flush()
    if "ctypes" not in sys.modules and not native_modules(sys.modules.keys() - _LOADED_AT_START):
        return
    with contextlib.suppress(ImportError, OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None).fflush(None)


def native_modules(names: set[str]) -> set[str]:
    """Which of the loaded modules `names` are extension modules (compiled code that may write
    through C stdio)."""
    loaded = sys.modules
    return {name for name in names if (getattr(loaded.get(name), "__file__", None) or "").endswith((".so", ".pyd"))}


def note_start() -> None:
    """The modules loaded now are the start that `flush_all` compares with: a forked run child calls
    this before its entry point runs, so that an extension module the launcher loaded after importing
    this one (a socket for its tee) is not taken for the run's native code (asking libc through
    ctypes costs the run ~2 ms)."""
    global _LOADED_AT_START
    _LOADED_AT_START = frozenset(sys.modules)


# What was loaded when this module was (or at `note_start`): only modules loaded since are looked at
# when the run ends (looking at every loaded module's file, here and again at the end, cost each
# launch ~0.3 ms).
_LOADED_AT_START = frozenset(sys.modules)
