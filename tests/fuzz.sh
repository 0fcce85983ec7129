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
    # On a crash cargo-fuzz exits non-zero; its output (the panic and the input) is shown whole.
    local log
    log=$(mktemp)
    if (cd "$1" && cargo fuzz run "$2" --fuzz-dir fuzz -- -max_total_time="$seconds" -print_final_stats=1) >"$log" 2>&1; then
        tail -n 3 "$log"
        rm -f "$log"
    else
        cat "$log"
        rm -f "$log"
        echo "fuzz: $2 FAILED (the crashing input is in $1/fuzz/artifacts/$2/)" >&2
        return 1
    fi
}
run services/smtp smtp_session
run services/smtp smtp_data
run services/pop3 pop3_session
echo "fuzz: 3 targets ran ${seconds}s each without a crash"
