"""Imports (DESIGN section 18): a Git repository cloned into a project's next version.

POST   -> start(): the URL checked, a PENDING row, the token handed over in Redis
worker -> execute(): claim, clone (git/clone.py), read back (§12's rules), a new version
reaper -> reap(): a RUNNING import whose worker stopped heartbeating ends FAILED
"""
