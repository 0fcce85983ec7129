#!/usr/bin/env bash
# Builds the mailroot images from what is compiled here (no registry is used):
#   mailroot-app:local  FROM scratch: the three binaries (release, or MAILROOT_IMAGE_PROFILE) and the few glibc libraries
#                       they link (copied from this Debian 12 build machine), user 10001.
#   mailroot-prometheus:local  (with COMPOSE_PROFILES=monitoring) Prometheus from Debian's
#                       package on the same base, scraping every node.
#   mailroot-lb:local   HAProxy from Debian's package, in a root filesystem made with
#                       debootstrap and imported once as mailroot-lb-base:bookworm (cached).
# Prints the image sizes at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

# The Debian archive this machine's own apt uses (deb822 `.sources` or one-line `.list`
# entries; the security archive skipped), unless DEBIAN_MIRROR names one.
apt_mirror() {
    {
        grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' || true
        grep -hsE '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            | sed -E 's/\[[^]]*\]//' | awk '{print $2}' || true
    } | { grep -v -- '-security' || true; } | awk 'NR == 1'
}
MIRROR=${DEBIAN_MIRROR:-$(apt_mirror)}

# MAILROOT_IMAGE_PROFILE=debug packs the debug binaries that `cargo test` has just built (the
# compose test does this: a second, release build would double CI time); default release.
profile=${MAILROOT_IMAGE_PROFILE:-release}
case "$profile" in
    release) echo "==> release build"; cargo build --release --bins --quiet ;;
    debug) echo "==> debug build"; cargo build --bins --quiet ;;
    *) echo "build-images: MAILROOT_IMAGE_PROFILE must be release or debug, not $profile" >&2; exit 2 ;;
esac
bins=target/$profile

work=deploy/.build
rm -rf "$work"
mkdir -p "$work/app/rootfs" "$work/app/data" "$work/app/tmp" \
    "$work/app/secrets/ca" "$work/app/secrets/store" "$work/app/secrets/frontend" "$work/app/secrets/admin"
# Non-empty, so COPY --chown creates the directories owned by the runtime user (a new named
# volume mounted on /data or /secrets takes that ownership).
touch "$work/app/data/.keep" "$work/app/tmp/.keep" "$work/app/secrets/.keep"
# One directory per role (`cluster init --by-role`), each the mount point of its own volume.
for role in ca store frontend admin; do touch "$work/app/secrets/$role/.keep"; done
for bin in mailroot-store mailroot-frontend mailrootctl; do
    cp "$bins/$bin" "$work/app/rootfs/"
done
# The dynamic loader and every library the binaries link, at their own paths.
for lib in $(ldd "$bins/mailroot-store" "$bins/mailroot-frontend" "$bins/mailrootctl" \
        | awk '/=>/ {print $3} /ld-linux/ {print $1}' | grep '^/' | sort -u); do
    mkdir -p "$work/app/rootfs$(dirname "$lib")"
    cp -L "$lib" "$work/app/rootfs$lib"
done
cp deploy/Dockerfile.app "$work/app/Dockerfile"
docker build -q -t mailroot-app:local "$work/app" >/dev/null

if ! docker image inspect mailroot-lb-base:bookworm >/dev/null 2>&1; then
    echo "==> debootstrap (once): minimal Debian with haproxy"
    command -v debootstrap >/dev/null 2>&1 || {
        sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq debootstrap
    }
    if [ -z "$MIRROR" ]; then
        echo "build-images: no Debian archive in this machine's apt configuration; set DEBIAN_MIRROR" >&2
        exit 1
    fi
    rootfs=$(mktemp -d /var/tmp/mailroot-lb.XXXXXX)
    debootstrap --variant=minbase --include=haproxy bookworm "$rootfs" "$MIRROR" >/dev/null
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" -c . | docker import - mailroot-lb-base:bookworm >/dev/null
    rm -rf "$rootfs"
fi
docker build -q -t mailroot-lb:local -f deploy/Dockerfile.lb deploy/lb >/dev/null

# The `monitoring` profile's Prometheus (Debian's package, installed on the same base with
# the base's apt sources: the mirror above), only when that profile is asked for.
if [[ ",${COMPOSE_PROFILES:-}," == *",monitoring,"* ]]; then
    echo "==> prometheus image (monitoring profile)"
    docker build --network host -q -t mailroot-prometheus:local \
        -f deploy/Dockerfile.prometheus deploy/prometheus >/dev/null
fi

echo "==> images"
docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^mailroot-(app|lb|prometheus):local '
