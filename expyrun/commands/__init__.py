"""The commands of `expyrun`, one module each with `main(args) -> int`; `cli.py`'s table names them.

A command parses its own arguments, calls the packages below it and returns an exit code; errors
are raised as `expyrun.errors` types and printed once by `cli.py`.
"""
