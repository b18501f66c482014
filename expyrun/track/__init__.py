"""What a run measures and how runs are read back and compared: metrics, the reading API, queries,
tags and notes."""
