"""Reading runs back: finding run folders and what each one's status is now (`runs.py`), the query
language of `expyrun list`, `Runs.where` and the viewer's query box (`query.py`), and the Python API
`expyrun.runs()` / `expyrun.sweep()` (`api.py`).

It sits above what writes the files it reads (`run/` the records, `sweep/` the sweep records,
`track/` the metrics and annotations) and `execute/` (a Slurm run's job, asked of Slurm), and below
what shows or checks them (`browse/`, `ui/`, `verify/`, the commands), so every arrow points down:
`track/` stays the low layer that a running run writes through, and imports nothing above it.
"""
