"""`expyrun verify RUN`: does a run's result reproduce? (SPEC 14; `run.py` is the way in)."""
