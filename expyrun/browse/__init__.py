"""Browsing run folders: list, show, diff, and restoring a run's environment."""
