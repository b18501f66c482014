"""Optuna search: the `__optuna__` section, one study run folder, one sub-folder per trial."""
