"""Running a resolved config: run folder, snapshot, freeze, git state, capture, entry point."""
