"""The event stream of a run: the append-only log, the process's coalescing publisher, replay."""
