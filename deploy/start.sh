#!/usr/bin/env bash
# Starts a working mailroot system on this machine. With Docker: the compose cluster (store with
# a named volume, two front-ends behind HAProxy), detached. Without Docker (or MAILROOT_LOCAL=1):
# the embedded default, one store node (data in ./.data/) and two front-ends as local
# processes on localhost ports, in the foreground (Ctrl-C stops every node). Either way a demo
# domain and mailbox are created, and data and settings survive a restart.
set -euo pipefail
cd "$(dirname "$0")/.."

# With Docker: the compose cluster (store, two front-ends, HAProxy), detached.
# MAILROOT_LOCAL=1 forces the local-process cluster below.
if [ "${MAILROOT_LOCAL:-0}" != 1 ] && docker info >/dev/null 2>&1; then
    # A try-out on a workstation: unprivileged ports that a local MTA does not hold (the
    # compose file itself publishes 25/587/465/110/995; set these variables to choose).
    export MAILROOT_SMTP_PORT=${MAILROOT_SMTP_PORT:-2525} MAILROOT_SUBMISSION_PORT=${MAILROOT_SUBMISSION_PORT:-1587} \
        MAILROOT_SMTPS_PORT=${MAILROOT_SMTPS_PORT:-1465} MAILROOT_POP3_PORT=${MAILROOT_POP3_PORT:-1110} \
        MAILROOT_POP3S_PORT=${MAILROOT_POP3S_PORT:-1995}
    ./deploy/compose-up.sh --scale frontend=2
    # The admin's credentials, copied out of the secrets-admin volume by compose-up.sh.
    export MAILROOT_STORE=https://127.0.0.1:${MAILROOT_STORE_PORT:-7070}
    export MAILROOT_ENV_FILE=$PWD/deploy/.secrets/cluster.env
    export MAILROOT_CLUSTER_CA=$PWD/deploy/.secrets/ca.pem
    export MAILROOT_CLUSTER_CERT=$PWD/deploy/.secrets/admin.pem
    export MAILROOT_CLUSTER_KEY=$PWD/deploy/.secrets/admin-key.pem
    for _ in $(seq 120); do target/release/mailrootctl domain list >/dev/null 2>&1 && break; sleep 0.5; done
    target/release/mailrootctl domain list | grep -qx example.test || target/release/mailrootctl domain add example.test
    if ! target/release/mailrootctl mailbox list | grep -qx demo@example.test; then
        pw=$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')
        echo "$pw" | target/release/mailrootctl mailbox add demo@example.test --password-stdin
        echo "demo mailbox demo@example.test, password $pw (shown once)"
    fi
    cat <<INFO

mailroot is running in Docker (project $(basename "$PWD"); stop: docker-compose down).
  load balancer     SMTP $MAILROOT_SMTP_PORT  submission $MAILROOT_SUBMISSION_PORT  smtps $MAILROOT_SMTPS_PORT  POP3 $MAILROOT_POP3_PORT  pop3s $MAILROOT_POP3S_PORT
  more front-ends   ./deploy/compose-up.sh --scale frontend=3
  mailrootctl       MAILROOT_STORE=$MAILROOT_STORE MAILROOT_ENV_FILE=deploy/.secrets/cluster.env \
                    MAILROOT_CLUSTER_CA=deploy/.secrets/ca.pem MAILROOT_CLUSTER_CERT=deploy/.secrets/admin.pem \
                    MAILROOT_CLUSTER_KEY=deploy/.secrets/admin-key.pem target/release/mailrootctl stat
INFO
    exit 0
fi

DATA=${MAILROOT_DATA_DIR:-$PWD/.data}
STORE_ADDR=127.0.0.1:7070
FE1_POP3=127.0.0.1:1110; FE1_SMTP=127.0.0.1:2525; FE1_SUB=127.0.0.1:1587; FE1_SMTPS=127.0.0.1:1465; FE1_POP3S=127.0.0.1:1995
FE2_POP3=127.0.0.1:1111; FE2_SMTP=127.0.0.1:2526; FE2_SUB=127.0.0.1:1588; FE2_SMTPS=127.0.0.1:1466; FE2_POP3S=127.0.0.1:1996
DEMO_DOMAIN=example.test
DEMO_USER=demo@$DEMO_DOMAIN

echo "==> building mailroot (release)"
cargo build --release --bins --quiet
BIN=$PWD/target/release

mkdir -p "$DATA/store"
# Cluster secrets: generated once, kept in the data dir (never committed).
if [ ! -f "$DATA/cluster.env" ]; then
    umask 077
    {
        echo "MAILROOT_AUTH_GUID=$(cat /proc/sys/kernel/random/uuid)"
        echo "MAILROOT_ADMIN_TOKEN=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        echo "DEMO_PASSWORD=$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    } > "$DATA/cluster.env"
fi
set -a; . "$DATA/cluster.env"; set +a
export MAILROOT_STORE=http://$STORE_ADDR

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$BIN/mailroot-store" --listen "$STORE_ADDR" --data "$DATA/store" 2>>"$DATA/store.log" &
pids+=($!)
for _ in $(seq 100); do
    "$BIN/mailrootctl" domain list >/dev/null 2>&1 && break
    sleep 0.1
done
"$BIN/mailroot-frontend" --hostname mx1.localhost --pop3 "$FE1_POP3" --smtp "$FE1_SMTP" \
    --submission "$FE1_SUB" --smtps "$FE1_SMTPS" --pop3s "$FE1_POP3S" 2>>"$DATA/frontend-1.log" >"$DATA/frontend-1.ready" &
pids+=($!)
"$BIN/mailroot-frontend" --hostname mx2.localhost --pop3 "$FE2_POP3" --smtp "$FE2_SMTP" \
    --submission "$FE2_SUB" --smtps "$FE2_SMTPS" --pop3s "$FE2_POP3S" 2>>"$DATA/frontend-2.log" >"$DATA/frontend-2.ready" &
pids+=($!)
# Each front-end prints MAILROOT_READY once it listens; one that exits instead (a port in use,
# say) stops everything here, before "running" is claimed.
for n in 1 2; do
    pid=${pids[$n]}
    for _ in $(seq 100); do
        grep -q MAILROOT_READY "$DATA/frontend-$n.ready" 2>/dev/null && break
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "front-end $n did not start:" >&2
            tail -n 5 "$DATA/frontend-$n.log" >&2
            exit 1
        fi
        sleep 0.1
    done
done

"$BIN/mailrootctl" domain list | grep -qx "$DEMO_DOMAIN" || "$BIN/mailrootctl" domain add "$DEMO_DOMAIN"
"$BIN/mailrootctl" mailbox list | grep -qx "$DEMO_USER" \
    || echo "$DEMO_PASSWORD" | "$BIN/mailrootctl" mailbox add "$DEMO_USER" --password-stdin

cat <<INFO

mailroot is running (data: $DATA, logs: $DATA/*.log). Ctrl-C stops it.
  store (gRPC)      $STORE_ADDR
  front-end 1       SMTP $FE1_SMTP  submission $FE1_SUB  smtps $FE1_SMTPS  POP3 $FE1_POP3  pop3s $FE1_POP3S
  front-end 2       SMTP $FE2_SMTP  submission $FE2_SUB  smtps $FE2_SMTPS  POP3 $FE2_POP3  pop3s $FE2_POP3S
  (TLS uses a self-signed certificate generated at start: clients must skip verification)
  demo mailbox      $DEMO_USER  password $DEMO_PASSWORD

Try it:
  swaks --server $FE1_SMTP --to $DEMO_USER --from you@example.org
  curl pop3://$FE2_POP3/1 --user '$DEMO_USER:$DEMO_PASSWORD'
Administer it (in another shell):
  set -a; . $DATA/cluster.env; set +a; export MAILROOT_STORE=http://$STORE_ADDR
  $BIN/mailrootctl stat
INFO
wait -n "${pids[@]}"
echo "a mailroot process exited; stopping (see $DATA/*.log)" >&2
