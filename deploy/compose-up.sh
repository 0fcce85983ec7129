#!/usr/bin/env bash
# Brings the compose cluster up: builds the images, creates the cluster secrets on first start
# (deploy/.secrets.env, git-ignored), then `compose up -d` with any extra arguments
# (e.g. --scale frontend=3). Works with `docker-compose` and with `docker compose`.
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/build-images.sh
if [ ! -f deploy/.secrets.env ]; then
    umask 077
    {
        echo "MAILROOT_AUTH_GUID=$(cat /proc/sys/kernel/random/uuid)"
        echo "MAILROOT_ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    } > deploy/.secrets.env
fi
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
"${compose[@]}" up -d "$@"
