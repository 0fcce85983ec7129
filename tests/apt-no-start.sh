# Sourced by tests/install-load-tools.sh and tests/install-slapd.sh (as root): installs Debian
# packages that ship a daemon WITHOUT starting it and without debconf questions.
#   install_without_starting "DEBCONF SELECTION" PACKAGE...
# During the install /usr/sbin/policy-rc.d exits 101 (no service starts); afterwards it is
# restored to exactly its previous content, or its absence, whatever happens. `apt-get update`
# runs first (callers only get here when something is missing).
install_without_starting() {
    local selection=$1
    shift
    PRC=/usr/sbin/policy-rc.d
    PRC_SAVED=""
    PRC_HAD=0
    if [ -e "$PRC" ]; then PRC_HAD=1; PRC_SAVED=$(mktemp); cp -p "$PRC" "$PRC_SAVED"; fi
    restore_prc() {
        if [ "$PRC_HAD" = 1 ]; then cp -p "$PRC_SAVED" "$PRC"; rm -f "$PRC_SAVED"; else rm -f "$PRC"; fi
    }
    trap restore_prc EXIT
    printf '#!/bin/sh\nexit 101\n' > "$PRC"
    chmod 755 "$PRC"

    export DEBIAN_FRONTEND=noninteractive
    echo "$selection" | debconf-set-selections || true
    apt-get update
    apt-get install -y --no-install-recommends "$@"

    restore_prc
    trap - EXIT
}
