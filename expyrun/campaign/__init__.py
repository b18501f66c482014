"""Which runs execute: the one loop (`loop.py`) and its proposers (one run, a sweep's points).

Proposers decide what runs next and hear how each run ended; executors (`expyrun.execute`) decide
where a prepared folder executes. This package sits between the commands and the executors.
"""
