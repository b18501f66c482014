"""What a run records besides its own `run.json`, with the one owner of each file: metrics, texts and
figures (`metrics.py`, written through `expyrun.log` in `logging.py`), tags and notes
(`annotations.py`), a study's best line and trial table (`studies.py`).

The low layer: it imports nothing of `run/` or above, so `run/` and a running run's own code write
through it. Reading runs back (the Python API, the query language) is `reading/`, above `run/`.
"""
