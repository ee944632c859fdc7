#!/usr/bin/env bash
# Install Debian's Docker engine and a static busybox, and make sure the engine answers on its local socket.
# Run as root on a fresh Debian machine (CI) or a developer's; idempotent: a second run only checks.
# No registry is reachable from here and none is used: the engine starts with no image, and the tests build
# their images FROM scratch around /bin/busybox. The engine's log goes to $DOCKERD_LOG.
set -euo pipefail

SOCKET=/var/run/docker.sock
DOCKERD_LOG=${DOCKERD_LOG:-/var/log/hiclaw-dockerd.log}
WAIT_SECONDS=${DOCKERD_WAIT:-60}

ping_engine() {
    # GET /_ping over the unix socket, with nothing but Python's standard library.
    python3 - "$SOCKET" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(3)
s.connect(sys.argv[1])
s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
reply = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    reply += chunk
sys.exit(0 if reply.split(b"\r\n", 1)[0].endswith(b" 200 OK") else 1)
EOF
}

if [ "$(id -u)" != 0 ]; then
    echo "docker-setup: must run as root (installs packages and starts dockerd)" >&2
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1 || [ ! -x /bin/busybox ] || ! dpkg -s busybox-static >/dev/null 2>&1; then
    echo "docker-setup: installing docker.io and busybox-static"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # The package's postinst cannot start the service here (policy-rc.d, no init): that is expected.
    apt-get install -y -q docker.io busybox-static
fi

if ping_engine; then
    echo "docker-setup: the Docker engine answers on $SOCKET"
    exit 0
fi

echo "docker-setup: starting dockerd (log: $DOCKERD_LOG)"
mkdir -p "$(dirname "$DOCKERD_LOG")"
# A stale socket or pid file from a killed engine would stop the new one.
if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    rm -f /var/run/docker.pid
fi
setsid dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null &
DOCKERD_PID=$!

for _ in $(seq 1 $((WAIT_SECONDS * 4))); do
    if ping_engine; then
        echo "docker-setup: the Docker engine answers on $SOCKET (dockerd pid $DOCKERD_PID)"
        exit 0
    fi
    if ! kill -0 "$DOCKERD_PID" 2>/dev/null; then
        break
    fi
    sleep 0.25
done

echo "docker-setup: FAILED: dockerd did not answer on $SOCKET within ${WAIT_SECONDS}s; last lines of $DOCKERD_LOG:" >&2
tail -n 40 "$DOCKERD_LOG" >&2 || true
exit 1
