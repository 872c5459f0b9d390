#!/bin/bash
# The template's start command: the Next.js dev server on port 3000, in the workspace beside
# this script (/home/user/app in the VM). The sandbox's preview starts the same command
# (DEV_SERVERS in orchestrator/sandboxes/e2b.py); with this one up, that one exits at once.
set -euo pipefail
cd "$(dirname "$0")/app"
# Its notice and its reports are for no one here.
export NEXT_TELEMETRY_DISABLED=1
exec npm exec -- next dev -H 0.0.0.0 -p 3000
