#!/usr/bin/env bash
# Installs the Debian packages that tests/load.sh drives, if they are missing:
#   postfix  ships /usr/sbin/smtp-source (SMTP throughput and per-message latency)
#   postal   ships /usr/sbin/postal (SMTP sessions), /usr/sbin/rabid (POP3 sessions), bhm
#   perl     Time::HiRes, for the timestamps tests/load.sh takes of the tools' output
# Idempotent: when the programs are already there, apt is not touched at all; `apt-get update`
# runs only when something has to be installed. Postfix is installed WITHOUT being started and
# without debconf questions ("No configuration"; /etc/postfix is never used by the load command):
# during the install /usr/sbin/policy-rc.d exits 101 (no service starts), and afterwards it is
# restored to exactly its previous content, or its absence.
# Needs root for an install (re-runs itself with sudo when not root).
set -euo pipefail

log() { echo "[install-load-tools] $*" >&2; }

missing=()
[ -x /usr/sbin/smtp-source ] || missing+=(postfix)
{ [ -x /usr/sbin/postal ] && [ -x /usr/sbin/rabid ]; } || missing+=(postal)
perl -MTime::HiRes -e 1 >/dev/null 2>&1 || missing+=(perl)
if [ ${#missing[@]} -eq 0 ]; then
    log "smtp-source, postal, rabid and perl are already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { log "installing ${missing[*]} needs root (no sudo)"; exit 1; }
    exec sudo "$0" "$@"
fi

# Postfix asks which mail configuration to write; "No configuration" writes none.
log "installing ${missing[*]}"
# shellcheck source=tests/apt-no-start.sh
. "$(dirname "$0")/apt-no-start.sh"
install_without_starting "postfix postfix/main_mailer_type select No configuration" "${missing[@]}"

# The package's own Postfix should not be running (policy-rc.d said no); if it is, say so and
# leave it alone: load.sh never talks to it.
if [ -s /var/spool/postfix/pid/master.pid ] &&
    kill -0 "$(cat /var/spool/postfix/pid/master.pid)" 2>/dev/null; then
    log "WARNING: a system postfix is running (pid $(cat /var/spool/postfix/pid/master.pid))"
fi
for tool in /usr/sbin/smtp-source /usr/sbin/postal /usr/sbin/rabid; do
    [ -x "$tool" ] || { log "$tool is still missing after the install"; exit 1; }
done
perl -MTime::HiRes -e 1 || { log "perl Time::HiRes is still missing after the install"; exit 1; }
log "installed ${missing[*]}"
