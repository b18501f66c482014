"""`expyrun verify RUN`: does a run's result reproduce? (SPEC 14; `run.py` is the way in). And
`expyrun env RUN`: compare with, or rebuild, a run's environment (`restore.py`), which a verify
rebuilds the same way."""
