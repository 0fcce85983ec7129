#!/usr/bin/env bash
# Runs every cargo-fuzz target for SECONDS each (default 60): the SMTP and POP3 session state
# machines and the SMTP message (DATA) path. Stable toolchain: RUSTC_BOOTSTRAP lets cargo-fuzz
# pass its -Z flags. Usage: tests/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1
run() { # crate-dir target
    echo "==> fuzzing $2 for ${seconds}s"
    (cd "$1" && cargo fuzz run "$2" --fuzz-dir fuzz -- -max_total_time="$seconds" -print_final_stats=1 2>&1 | tail -3)
    # cargo fuzz exits non-zero (and prints the crashing input) when a target fails.
}
run services/smtp smtp_session
run services/smtp smtp_data
run services/pop3 pop3_session
echo "fuzz: 3 targets ran ${seconds}s each without a crash"
