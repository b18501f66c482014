"""The machine's queue of prepared run folders (SPEC 13): its folder (`store.py`), what queues runs
(`enqueue.py`), the worker that executes them (`worker.py`) and its node hooks (`node_hooks.py`)."""
