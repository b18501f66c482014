"""The bootstrap a `__python__` interpreter runs (as `-c` code): it needs only the standard library.

It reads its entry (import root, module, function, name, config) from the memory file named by
`EXPYRUN_PAYLOAD_FD`, calls `function(name, config)` with the run folder as current directory, and
writes `{"result": ...}` or `{"exception": {...}}` on the pipe named by `EXPYRUN_RESULT_FD`; its exit
status says the rest (0, 1, 130 interrupted, 143 terminated), as expyrun's own run child does.

Its exit steps are a plain run's (`shutdown.py`, whose source it carries): threading's exit hooks,
non-daemon threads waited for at most the grace, atexit functions, then Python and C stdio flushed.
A process the entry point forks that returns too never reports a result of its own.
"""

from __future__ import annotations

from pathlib import Path

from expyrun.run import shutdown

_MAIN = r"""
import faulthandler, json, os, signal, sys, traceback

def _terminated(signum, frame):
    raise SystemExit(143)

def _flush_periodically():  # block-buffered output reaches the log within 0.1 s, as in a plain run
    event = threading.Event()
    while not event.wait(0.1):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass

def _jsonable(value):
    for candidate in (lambda: value, getattr(value, "tolist", None), getattr(value, "item", None)):
        if candidate is None:
            continue
        try:
            converted = candidate()
            json.dumps(converted)
            return converted
        except Exception:
            continue
    return None

def _say(text=None):  # on stderr if there still is one (an entry point may have closed fd 2)
    try:
        if text is None:
            traceback.print_exc()
        else:
            sys.stderr.write(text)
            sys.stderr.flush()
    except Exception:
        pass

def _mismatch(function, module):  # the run child's SignatureMismatch message
    name = getattr(function, "__name__", "main")
    code = getattr(function, "__code__", None)
    shown = f"{name}({', '.join(code.co_varnames[:code.co_argcount])})" if code is not None else name
    return (f"`{shown}` cannot be called as `{name}(name, config)`, which is how expyrun calls the entry point"
            f" ({module.__file__})")

def _call(entry):  # the entry point's message and exit code, as the run child makes them
    message, code = {}, 0
    try:
        import importlib
        module = importlib.import_module(entry["module"])
        function = getattr(module, entry["function"])
        try:
            value = function(entry["name"], entry["config"])
        except TypeError as error:
            if error.__traceback__.tb_next is not None:  # raised inside the entry point
                raise
            text = _mismatch(function, module)  # raised by the call itself: the arguments do not fit
            _say(f"expyrun: {text}\n")
            return {"exception": {"type": "SignatureMismatch", "message": text}}, 1
        message["result"] = _jsonable(value)
    except KeyboardInterrupt:
        _say()
        code = 130
    except SystemExit as error:
        code = error.code if error.code in (None, 0, 143) else 1
        code = code or 0
        if code == 1:
            if not isinstance(error.code, int):
                _say(f"{error.code}\n")
            message["exception"] = {"type": "SystemExit", "message": str(error.code)}
    except BaseException as error:
        _say()
        message["exception"] = {"type": type(error).__name__, "message": str(error)}
        code = 1
    return message, code

def _main():
    with os.fdopen(int(os.environ.pop("EXPYRUN_PAYLOAD_FD")), "rb") as payload:
        entry = json.loads(payload.read())
    result_fd = int(os.environ.pop("EXPYRUN_RESULT_FD"))
    os.set_inheritable(result_fd, False)
    owner = os.getpid()
    signal.signal(signal.SIGTERM, _terminated)
    faulthandler.enable()  # a crash's traceback goes to the run's log
    sys.dont_write_bytecode = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except Exception:
            pass
    threading.Thread(target=_flush_periodically, daemon=True, name="expyrun-flush").start()
    sys.path.insert(0, entry["import_root"])
    message, code = _call(entry)
    if os.getpid() != owner:  # a process the entry point forked, ending here: it reports nothing
        flush_all()
        os._exit(code)
    try:
        shut_down(exit_grace())
    except KeyboardInterrupt:
        code, message = 130, {}
    except SystemExit:
        code, message = 143, {}
    with os.fdopen(result_fd, "w") as stream:
        json.dump(message, stream, default=str)
    flush_all()
    os._exit(code)

_main()
"""

SOURCE = Path(shutdown.__file__).read_text(encoding="utf-8") + _MAIN
"""The `-c` code: the exit steps' source, then the bootstrap's."""
