#!/usr/bin/env bash
# Brings the compose cluster up: builds the images, then `compose up -d` with any extra
# arguments (e.g. --scale frontend=3). Works with `docker-compose` and with `docker compose`.
# On the first start the compose file's `init` service writes the cluster secrets (CA,
# certificates, auth GUID, admin token) into the project's secrets volumes, one per role, their
# one home. Afterwards what mailrootctl on this host needs — ca.pem, admin.pem, admin-key.pem
# and cluster.env (the admin token) — is copied out of the admin volume to deploy/.secrets/
# (git-ignored, mode 0700), replacing an earlier copy:
#   MAILROOT_STORE=https://127.0.0.1:7070 MAILROOT_ENV_FILE=deploy/.secrets/cluster.env \
#   MAILROOT_CLUSTER_CA=deploy/.secrets/ca.pem MAILROOT_CLUSTER_CERT=deploy/.secrets/admin.pem \
#   MAILROOT_CLUSTER_KEY=deploy/.secrets/admin-key.pem target/release/mailrootctl nodes
set -euo pipefail
cd "$(dirname "$0")/.."
./deploy/build-images.sh
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
"${compose[@]}" up -d "$@"

init=$("${compose[@]}" ps -a -q init)
if [ -z "$init" ]; then
    echo "compose-up: no init container; cannot copy the admin credentials" >&2
    exit 1
fi
out=deploy/.secrets
mkdir -p "$out"
chmod 700 "$out"
for f in ca.pem admin.pem admin-key.pem cluster.env; do
    rm -f "$out/$f"
    docker cp "$init:/secrets/admin/$f" "$out/$f"
done
# docker cp run by root keeps the container's owner (10001); the copies are this user's.
chown "$(id -u):$(id -g)" "$out"/*
chmod 600 "$out/admin-key.pem" "$out/cluster.env"
echo "admin credentials for mailrootctl: $out/ (ca.pem admin.pem admin-key.pem cluster.env)"
