#!/usr/bin/env bash
# Installs the OpenLDAP server and client tools that tests/tests/directory.rs drives, if they
# are missing:
#   slapd       /usr/sbin/slapd, the server the test starts itself (own slapd.conf, loopback port)
#   ldap-utils  ldapadd, ldapsearch (the test loads its users and polls readiness with them)
# Idempotent: when the programs are already there, apt is not touched at all; `apt-get update`
# runs only when something has to be installed. slapd is installed WITHOUT being started and
# without a directory of its own (debconf `slapd/no_configuration true`: no /etc/ldap/slapd.d
# database, no questions): during the install /usr/sbin/policy-rc.d exits 101 (no service
# starts), and afterwards it is restored to exactly its previous content, or its absence.
# Needs root for an install (re-runs itself with sudo when not root).
set -euo pipefail

log() { echo "[install-slapd] $*" >&2; }

missing=()
[ -x /usr/sbin/slapd ] || missing+=(slapd)
{ command -v ldapadd >/dev/null 2>&1 && command -v ldapsearch >/dev/null 2>&1; } || missing+=(ldap-utils)
if [ ${#missing[@]} -eq 0 ]; then
    log "slapd, ldapadd and ldapsearch are already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { log "installing ${missing[*]} needs root (no sudo)"; exit 1; }
    exec sudo "$0" "$@"
fi

PRC=/usr/sbin/policy-rc.d
PRC_SAVED=""
PRC_HAD=0
if [ -e "$PRC" ]; then PRC_HAD=1; PRC_SAVED=$(mktemp); cp -p "$PRC" "$PRC_SAVED"; fi
# Restore policy-rc.d to exactly its previous content (or absence), whatever happens.
restore_prc() {
    if [ "$PRC_HAD" = 1 ]; then cp -p "$PRC_SAVED" "$PRC"; rm -f "$PRC_SAVED"; else rm -f "$PRC"; fi
}
trap restore_prc EXIT
printf '#!/bin/sh\nexit 101\n' > "$PRC"
chmod 755 "$PRC"

export DEBIAN_FRONTEND=noninteractive
# "Omit OpenLDAP server configuration": the package makes no database and asks nothing; the
# test writes its own slapd.conf in its temp dir.
echo "slapd slapd/no_configuration boolean true" | debconf-set-selections || true
log "installing ${missing[*]}"
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"

restore_prc
trap - EXIT

# The package's own slapd should not be running (policy-rc.d said no); if it is, say so and
# leave it alone: the test's slapd listens on a port of its own.
if pgrep -x slapd >/dev/null 2>&1; then
    log "WARNING: a system slapd is running (pid $(pgrep -x slapd | tr '\n' ' '))"
fi
[ -x /usr/sbin/slapd ] || { log "/usr/sbin/slapd is still missing after the install"; exit 1; }
for tool in ldapadd ldapsearch; do
    command -v "$tool" >/dev/null 2>&1 || { log "$tool is still missing after the install"; exit 1; }
done
log "installed ${missing[*]}"
