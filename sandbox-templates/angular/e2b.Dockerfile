# The E2B template of ANGULAR projects: the pinned starter in app/ (the same one the local
# sandbox builds) with the dependencies of its lock file, and start.sh beside it, as here.
# Build and register it: `orchestrator e2b-template build angular` (README "E2B templates").
FROM node:20.20.2-bookworm-slim

# E2B runs a sandbox's commands as `user`: the workspace and its node_modules are theirs.
USER user
WORKDIR /home/user/app
COPY --chown=user:user app/ ./
RUN npm ci --no-audit --no-fund
COPY --chown=user:user --chmod=0755 start.sh /home/user/start.sh
