#!/usr/bin/env bash
# Make this machine ready to grade: the Python package, a Docker engine if none answers, and the
# assignments' images and data. Idempotent; safe to re-run. Needs root only to install and start Docker.
# Inside an active virtual environment it installs there (its python3 comes first on PATH);
# PYTHON=/path/to/python picks another interpreter. Each step prints how long it took.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${VIRTUAL_ENV:-}" ] && [ -z "${PYTHON:-}" ]; then
  PYTHON="$VIRTUAL_ENV/bin/python"
fi
PYTHON=${PYTHON:-python3}

step_start=$SECONDS
step_done() { echo "setup: $1 ($((SECONDS - step_start)) s)" >&2; step_start=$SECONDS; }

"$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[dev]"
step_done "package installed into $("$PYTHON" -c 'import sys; print(sys.prefix)')"

daemon_answers() { "$PYTHON" - <<'PY' >/dev/null 2>&1
import docker
docker.from_env(timeout=5).ping()
PY
}

need=()
daemon_answers || command -v dockerd >/dev/null || need+=(docker.io)  # an existing engine is kept
command -v debootstrap >/dev/null || need+=(debootstrap)  # builds the base image without a registry
command -v bwrap >/dev/null || need+=(bubblewrap)  # the opt-in local backend
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)  # scripts/team_mlflow.sh
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: installing ${need[*]} (Debian packages)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    step_done "Debian packages installed"
  else
    echo "setup: not root, so not installing ${need[*]}" >&2
  fi
fi
if ! daemon_answers; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: no Docker daemon answers and this is not root: start Docker, or re-run as root" >&2
    exit 1
  fi
  # No default bridge and no iptables rules: containers get no network unless given one,
  # and the harness only ever uses network_mode=none.
  echo "setup: starting dockerd (log: /var/log/dockerd.log)" >&2
  nohup dockerd --bridge=none --iptables=false >/var/log/dockerd.log 2>&1 &
  for _ in $(seq 60); do daemon_answers && break; sleep 1; done
  daemon_answers || { echo "setup: dockerd did not answer; see /var/log/dockerd.log" >&2; exit 1; }
  step_done "dockerd started"
fi
# The base image (debootstrap, about 50 s once), then each assignment's image and data; cached by hash.
for assignment in ranker abtest endpoint; do
  "$PYTHON" -m harness prepare "$assignment" >&2
  step_done "$assignment prepared"
done
echo "setup: ready (package installed, Docker answers, assignment images built)" >&2
