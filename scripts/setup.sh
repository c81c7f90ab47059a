#!/usr/bin/env bash
# Make this machine ready to grade: the Python package, then a Docker engine if none answers.
# Idempotent; safe to re-run. Needs root only to install and start Docker.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[dev]"

daemon_answers() { "$PYTHON" - <<'PY' >/dev/null 2>&1
import docker
docker.from_env(timeout=5).ping()
PY
}

need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v bwrap >/dev/null || need+=(bubblewrap)
if ! daemon_answers || [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    daemon_answers && exit 0
    echo "setup: no Docker daemon answers and this is not root: start Docker, or re-run as root" >&2
    exit 1
  fi
  if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]} (Debian packages)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi
if ! daemon_answers; then
  # No default bridge and no iptables rules: containers get no network unless given one,
  # and the harness only ever uses network_mode=none.
  echo "setup: starting dockerd (log: /var/log/dockerd.log)" >&2
  nohup dockerd --bridge=none --iptables=false >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 60); do daemon_answers && break; sleep 1; done
  daemon_answers || { echo "setup: dockerd did not answer; see /var/log/dockerd.log" >&2; exit 1; }
fi
echo "setup: ready (python package installed, Docker daemon answers)" >&2
