"""Optuna's own log lines, with control characters shown escaped like everything printed of a config."""

from __future__ import annotations

import logging

from expyrun.console import visible


class _VisibleRecords(logging.Filter):
    """Rewrites a log record's message with control characters shown escaped."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = visible(record.getMessage()), None
        return True


def escape_optuna_logs() -> None:
    """Optuna logs the study's name and trials' parameters (`A new study created ... with name: `)
    on the study's stderr, the terminal and outputs.log: like everything printed of a config, with
    control characters shown escaped. Its own handler is filtered, once."""
    for handler in logging.getLogger("optuna").handlers:
        if not any(isinstance(f, _VisibleRecords) for f in handler.filters):
            handler.addFilter(_VisibleRecords())
