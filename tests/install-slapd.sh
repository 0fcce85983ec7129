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

# "Omit OpenLDAP server configuration": the package makes no database and asks nothing; the
# test writes its own slapd.conf in its temp dir.
log "installing ${missing[*]}"
# shellcheck source=tests/apt-no-start.sh
. "$(dirname "$0")/apt-no-start.sh"
install_without_starting "slapd slapd/no_configuration boolean true" "${missing[@]}"

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
