"""Talking to Git remotes safely (DESIGN section 18): where a clone or push may go, the one way
`git` is run against a remote, cloning, and pushing a version as a commit."""
