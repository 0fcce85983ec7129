#!/usr/bin/env bash
# Regenerates docs/performance.md: mailroot (store + one front-end, default flags) side by side
# with Postfix -> LMTP -> Dovecot on this machine, with the shared benchmark kit
# (../shared/bench, next to the project root), plus the store's and the front-end's CPU per
# operation. Takes a few minutes once built (3 on 2026-12-07); keep other work off the machine.
#
# usage: tests/perf-report.sh [OUTPUT]          (default docs/performance.md)
#   BENCH=DIR           the kit (default ../shared/bench)
#   SKIP_ARGON2=1       leave out the run with PASS_SCHEME=ARGON2ID
#   OPS=N               operations per CPU measurement (default 1000)
#   CPU_DATA=DIR        the store's data directory for the CPU measurement (default: a fresh
#                       journaled ext4 in a loop file when run as root, else a temp dir)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${1:-docs/performance.md}
bench=${BENCH:-$root/../shared/bench}
ops=${OPS:-1000}
[ -x "$bench/vs-mailroot.sh" ] || { echo "perf-report: no benchmark kit at $bench" >&2; exit 2; }
work=$(mktemp -d)
cleanup() {
  kill -9 ${spid:-} ${fpid:-} 2>/dev/null || true
  wait ${spid:-} ${fpid:-} 2>/dev/null || true
  [ -z "${loop_mnt:-}" ] || umount "$loop_mnt" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
log() { echo "[perf-report $(date -u +%H:%M:%S)] $*" >&2; }

log "cargo build --release"
cargo build --release --workspace --bins --quiet
bin=$root/target/release

# ---- CPU per operation, first (on a quiet filesystem: the side-by-side runs below create and
# delete thousands of files, and ext4 without a journal then scans recently freed inodes at
# every file creation): a store and a front-end of our own, /proc/<pid>/stat before and after.
fp() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
sp=$(fp); smtp=$(fp); pop=$(fp)
guid=$(cat /proc/sys/kernel/random/uuid); tok=$(cat /proc/sys/kernel/random/uuid)
# The store's data for this measurement: a fresh ext4 with mkfs's defaults (journaled, as a mail
# server's spool would be) in a loop file, so that the figure is the store's and not the
# history of the machine's own filesystem (here: ext4 without a journal, whose inode
# allocator scans recently freed inodes for minutes after the builds and runs before).
cpu_fs="temp dir on the machine's filesystem"
cpu_data=${CPU_DATA:-}
if [ -n "$cpu_data" ]; then
  cpu_fs="CPU_DATA=$cpu_data"
elif [ "$(id -u)" = 0 ] && command -v mkfs.ext4 >/dev/null; then
  truncate -s 4G "$work/fs.img" && mkfs.ext4 -q -F "$work/fs.img" && mkdir -p "$work/mnt" \
    && mount -o loop "$work/fs.img" "$work/mnt" && loop_mnt=$work/mnt \
    && cpu_data=$loop_mnt/data && cpu_fs="a fresh ext4 (mkfs.ext4 defaults, journaled) in a loop file"
fi
cpu_data=${cpu_data:-$work/data}
log "store data for the CPU measurement: $cpu_fs"
"$bin/mailroot-store" --listen 127.0.0.1:$sp --data "$cpu_data" --auth-guid "$guid" \
  --admin-token "$tok" >"$work/store.log" 2>&1 & spid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$sp) 2>/dev/null && break; sleep 0.1; done
"$bin/mailroot-frontend" --store http://127.0.0.1:$sp --auth-guid "$guid" --hostname mx.bench.test \
  --smtp 127.0.0.1:$smtp --pop3 127.0.0.1:$pop >"$work/fe.log" 2>&1 & fpid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$smtp) 2>/dev/null && break; sleep 0.1; done
export MAILROOT_STORE=http://127.0.0.1:$sp MAILROOT_ADMIN_TOKEN=$tok
"$bin/mailrootctl" domain add bench.test >/dev/null
for i in $(seq 0 49); do echo pw | "$bin/mailrootctl" mailbox add "u$i@bench.test" --password-stdin >/dev/null; done
load="python3 $bench/load.py --users 50"
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
sys_ticks() { awk '{print $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
# ms of CPU per operation for the command "$@": store, front-end, and the store's share spent
# in the kernel (system time: file creation, fsyncs, the virtual disk's notifications).
per_op() {
  local n=$1; shift
  local s0 f0 k0 s1 f1 k1
  s0=$(ticks $spid); f0=$(ticks $fpid); k0=$(sys_ticks $spid)
  "$@" >"$work/op.json" 2>"$work/op.err"
  s1=$(ticks $spid); f1=$(ticks $fpid); k1=$(sys_ticks $spid)
  python3 -c "import sys;s,f,k,n,hz=map(float,sys.argv[1:]);print('%.3f %.3f %.3f'%(s*1000/hz/n,f*1000/hz/n,k*1000/hz/n))" \
    $((s1 - s0)) $((f1 - f0)) $((k1 - k0)) "$n" "$hz"
}
log "CPU per operation ($ops operations each)"
# Warm every user's credentials once (the first login of a user pays Argon2id).
$load pop3 --target 127.0.0.1:$pop -c 10 -t 50 >/dev/null 2>&1
read -r login_s login_f login_k < <(per_op "$ops" $load pop3 --target 127.0.0.1:$pop -c 10 -t "$ops")
login_fail=$(python3 -c 'import json,sys;print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]).get("failed",0))' "$work/op.json")
read -r smtp_s smtp_f smtp_k < <(per_op "$ops" $load smtp --target 127.0.0.1:$smtp -n 10 -m $((ops / 10)) -s 10240)
smtp_fail=$(python3 -c 'import json,sys;print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]).get("failed",0))' "$work/op.json")
rss() { awk '/VmHWM/{print $2}' "/proc/$1/status"; }
store_hwm=$(rss $spid); fe_hwm=$(rss $fpid)

kill -9 $spid $fpid 2>/dev/null || true; wait $spid $fpid 2>/dev/null || true
if [ -n "${loop_mnt:-}" ]; then umount "$loop_mnt" && loop_mnt=""; fi

log "side-by-side run, Dovecot with plain-text passwords (the strictest peer)"
# The baseline's packages first, on their own (apt's output stays out of the report).
log "installing the baseline (Postfix, Dovecot) if missing"
"$bench/baseline.sh" install >"$work/install.log" 2>&1 || { cat "$work/install.log" >&2; exit 1; }
# The kit leaves its baseline running after a run and reuses a running one as it is, with the
# password scheme it was started with: stop it before each run, so that each run's Dovecot is
# configured with that run's PASS_SCHEME, and after the last.
stop_baseline() { "$bench/baseline.sh" stop >/dev/null 2>&1 || true; }
stop_baseline
OUT=$work/plain-results PASS_SCHEME=PLAIN "$bench/vs-mailroot.sh" >"$work/plain.txt" 2>"$work/plain.err"
if [ "${SKIP_ARGON2:-0}" != 1 ]; then
  log "side-by-side run, Dovecot with Argon2id hashes (for information)"
  stop_baseline
  OUT=$work/argon2-results PASS_SCHEME=ARGON2ID "$bench/vs-mailroot.sh" >"$work/argon2.txt" 2>"$work/argon2.err"
  # What the baseline really ran with (its users file), for the report.
  argon2_users=$(grep -c '{ARGON2ID}' "${BENCH_TMP:-/tmp/mailbench}/dovecot/users" 2>/dev/null || true)
fi
stop_baseline

# ---- the report
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
mkdir -p "$(dirname "$out")"
{
  echo "# Performance: mailroot against Postfix + Dovecot"
  echo
  echo "Generated by \`tests/perf-report.sh\` on $(date -u +%Y-%m-%d) at commit $commit$dirty, on this"
  echo "$(nproc)-core machine ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'))."
  echo "Load generator, mailroot and the baseline share the cores, so absolute numbers drift from"
  echo "run to run: read the **ratios**, measured back to back in one run by the shared kit"
  echo "(\`../shared/bench/vs-mailroot.sh\`; its README explains every column). mailroot runs with"
  echo "default flags: one store, one front-end. mailroot's 250 means *stored and fsynced*, so its"
  echo "accepted msg/s compare with the baseline's *delivered* msg/s (\`deliv\` columns)."
  echo
  echo "## Store and front-end CPU per operation"
  echo
  echo "Measured separately from \`/proc/<pid>/stat\` around $ops operations each (10 concurrent"
  echo "clients, loopback): a *warm POP3 login* is a whole session of a user who logged in before"
  echo "(USER/PASS, STAT, QUIT on an empty maildrop; the verified credential is cached in the store,"
  echo "\`store-node/src/auth.rs\`); a *10 KiB message* is one SMTP transaction stored durably."
  echo "The store's data is on $cpu_fs."
  echo
  echo "| operation | store CPU ms/op | of it in the kernel | front-end CPU ms/op | target (store) | failed |"
  echo "|---|---|---|---|---|---|"
  echo "| warm POP3 login | $login_s | $login_k | $login_f | <= 2 | $login_fail |"
  echo "| 10 KiB SMTP message | $smtp_s | $smtp_k | $smtp_f | <= 0.5 | $smtp_fail |"
  echo
  echo "The kernel's share of a message is the durability protocol (\`store-node/src/objects/local.rs\`:"
  echo "a new file, its \`fdatasync\`, the link into the mailbox, the group-committed directory"
  echo "\`fsync\`); on this virtual machine each sync is also a notification to the virtual disk."
  echo
  echo "Peak RSS of that run: store $((store_hwm / 1024)) MB, front-end $((fe_hwm / 1024)) MB."
  echo
  echo "## Side by side, Dovecot with plain-text passwords (the strictest peer)"
  echo
  echo "The store's data is where the kit puts it: a temp dir in /tmp, beside the baseline's"
  echo "Postfix queue (/tmp/mailbench). This machine's ext4 has no journal; its inode allocator"
  echo "then passes over every inode freed in a block group in the last 1-5 minutes at each file"
  echo "creation there, and Postfix frees one queue file per message. The store spreads its"
  echo "mailboxes over the block groups (\`store-node/src/objects/placement.rs\`), so that they do"
  echo "not share one with the queue."
  echo
  echo "Issue 9's targets, from this run (\`tests/perf-targets.py\`):"
  echo
  python3 "$root/tests/perf-targets.py" "$work/plain-results"
  echo
  echo "The kit's whole report:"
  echo
  echo '```'
  cat "$work/plain.txt"
  echo '```'
  if [ -f "$work/argon2.txt" ]; then
    echo
    echo "## For information: Dovecot with Argon2id password hashes (PASS_SCHEME=ARGON2ID)"
    echo
    echo "Dovecot then pays Argon2id at every login not in its auth cache, and so do the drain"
    echo "polls of the SMTP runs, which lowers the baseline's *delivered* SMTP figures: read the"
    echo "POP3 rows of this run only. Dovecot's users file in this run: ${argon2_users:-0} users with"
    echo "\`{ARGON2ID}\` hashes."
    echo
    echo '```'
    cat "$work/argon2.txt"
    echo '```'
  fi
} >"$out"
log "wrote $out"
