#!/usr/bin/env bash
# Runs ALL mailroot tests on a fresh machine: installs the mail clients the tests drive
# (Debian packages), checks formatting and lints, builds the real binaries, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

# Real mail clients used by the integration tests (swaks needs Net::SSLeay for TLS).
packages=(swaks curl mpop msmtp libnet-ssleay-perl libio-socket-ssl-perl dnsmasq-base python3-dkim python3-nacl python3-aiosmtpd)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing test clients: ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The load command's tools (Postfix's smtp-source, postal, rabid): installed without starting
# Postfix (tests/load.sh is tested against a running cluster).
./tests/install-load-tools.sh

# OpenLDAP's slapd and ldap-utils for the directory (LDAP) authentication test; installed
# without starting slapd or configuring a directory (the test runs its own).
./tests/install-slapd.sh

# A real S3-compatible server for the store's S3 backend tests.
if ! command -v s3s-fs >/dev/null 2>&1; then
    echo "==> installing s3s-fs"
    cargo install s3s-fs@0.14.1 --features binary --locked --quiet
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> building binaries"
cargo build --workspace --bins
echo "==> cargo test"
MAILROOT_REQUIRE_CLIENTS=1 MAILROOT_REQUIRE_S3=1 cargo test --workspace

# A short, bounded fuzz run of every target (tests/fuzz.sh runs them longer on request).
./tests/fuzz.sh "${MAILROOT_FUZZ_SECONDS:-60}"
