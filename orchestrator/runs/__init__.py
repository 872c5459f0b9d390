"""A run: claiming it, executing it, the agent loop and its tools, what the model sees,
cancellation, and the reaper that lets no run stay unfinished."""
