"""What the sweep benchmarks run: `python -m expyrun CONFIG` in-process, then its CPU time.

`python -c MEASURED CONFIG` prints, as its last line on stderr, `{"own": s, "children": s}`: the
sweep process's own CPU seconds, and its children's once every child is waited for (the tee
outlives the launcher by a moment), and exits with expyrun's exit code. Shared by `bench_sweep.py`
and `bench_reuse.py` (run as scripts: this folder is on `sys.path`).
"""

MEASURED = """\
import json, os, resource, sys
from expyrun.cli import main
code = main(sys.argv[1:])
own = resource.getrusage(resource.RUSAGE_SELF)
try:
    while True:
        os.wait()
except ChildProcessError:
    pass
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"own": own.ru_utime + own.ru_stime, "children": children.ru_utime + children.ru_stime}),
      file=sys.stderr)
sys.exit(code)
"""
