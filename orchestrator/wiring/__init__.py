"""The core's edge: building a process's services from Settings, the bundled Redis, the CLI."""
