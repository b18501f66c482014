"""Browsing run folders: list, show, diff, tags and notes, the dashboard (a run's environment is
restored by `verify/restore.py`, with reproducing a run)."""
