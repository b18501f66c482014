"""The names of what tracking writes in a run folder, apart from the code that writes and reads it
(`track/metrics.py`): the launch path (the run child, trial workers, the end of a run) needs the
names only, and a run that logs nothing then never imports the writers (a millisecond per launch)."""

METRICS_FILE = "metrics.jsonl"  # expyrun.log's lines, and what programs append to $EXPYRUN_METRICS
TEXTS_FILE = "texts.jsonl"  # expyrun.log_text's lines
FIGURES_FOLDER = "figures"  # expyrun.log_figure's files: figures/{tag}/{step}.png or .json
SKIPPED_FILE = ".metrics_skipped"  # matches of `__metrics__` that were not numbers, counted by the tee
COLUMNS_FILE = ".metrics.columns"  # metrics.jsonl as binary columns, written when the run ends
METRICS_ENV = "EXPYRUN_METRICS"  # the variable naming METRICS_FILE for the run's programs
