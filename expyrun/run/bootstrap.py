"""The bootstrap a `__python__` interpreter runs (as `-c` code): it needs only the standard library.

It reads its entry (import root, module, function, name, config) from the memory file named by
`EXPYRUN_PAYLOAD_FD`, calls `function(name, config)` with the run folder as current directory, and
writes `{"result": ...}` or `{"exception": {...}}` on the pipe named by `EXPYRUN_RESULT_FD`; its exit
status says the rest (0, 1, 130 interrupted, 143 terminated), as expyrun's own run child does.
"""

from __future__ import annotations

SOURCE = r"""
import json, os, signal, sys, traceback

def _terminated(signum, frame):
    raise SystemExit(143)

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

def _main():
    with os.fdopen(int(os.environ.pop("EXPYRUN_PAYLOAD_FD")), "rb") as payload:
        entry = json.loads(payload.read())
    result_fd = int(os.environ.pop("EXPYRUN_RESULT_FD"))
    signal.signal(signal.SIGTERM, _terminated)
    sys.dont_write_bytecode = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except Exception:
            pass
    sys.path.insert(0, entry["import_root"])
    message, code = {}, 0
    try:
        import importlib
        module = importlib.import_module(entry["module"])
        message["result"] = _jsonable(getattr(module, entry["function"])(entry["name"], entry["config"]))
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 130
    except SystemExit as error:
        code = error.code if error.code in (0, 143) else 1
        if code == 1:
            message["exception"] = {"type": "SystemExit", "message": str(error.code)}
    except BaseException as error:
        traceback.print_exc()
        message["exception"] = {"type": type(error).__name__, "message": str(error)}
        code = 1
    with os.fdopen(result_fd, "w") as stream:
        json.dump(message, stream, default=str)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

_main()
"""
