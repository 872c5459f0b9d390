#!/bin/bash
# The template's start command: the Vue dev server on port 5173, in the workspace beside
# this script (/home/user/app in the VM). The sandbox's preview starts the same command
# (DEV_SERVERS in orchestrator/sandboxes/e2b.py); with this one up, that one exits at once.
set -euo pipefail
cd "$(dirname "$0")/app"
exec npm exec -- vite --host 0.0.0.0 --port 5173 --strictPort
