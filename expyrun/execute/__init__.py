"""Executors: how prepared run folders execute (a forked child, a local pool, worker processes)."""
