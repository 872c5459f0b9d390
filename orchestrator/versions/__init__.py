"""Versions of a project's app (DESIGN section 12): numbering, bases, changes, diff, restore.

base = latest(project)                 # when a worker claims a run
sandbox.seed(base.files)               # before the model's first step
... the agent edits the workspace ...
files = sandbox.snapshot().files       # the whole app, read back
Fragment(version=n + 1, parent=base, changes=compute(base.files, files))
"""
