#!/usr/bin/env bash
# tests/load.sh: bounded load against any mailroot deployment (local processes, or the compose
# cluster behind HAProxy), driven by standard tools, talking only to the two addresses given.
#
# usage: tests/load.sh SMTP_HOST:PORT POP3_HOST:PORT [options]
#        tests/load.sh --check-tools        (exit 0 when every tool is installed)
#
# Three phases, in this order (each one optional, see --phases):
#   smtp    Postfix's smtp-source: --messages messages of --size bytes over --concurrency
#           parallel sessions (one smtp-source process per session and recipient, many
#           messages per connection). Throughput, and per-message latency from smtp-source's
#           own counter (-c): the time between two completed transactions on a connection,
#           i.e. MAIL FROM .. 250 after DATA (with --new-connection: QUIT, connect, greeting,
#           EHLO and the transaction). A process's first message, which also carries its
#           start-up, is counted but not timed.
#   postal  Debian's postal: --concurrency SMTP client threads for --session-seconds seconds,
#           1..3 messages per connection, random recipients from --users. Messages, sessions,
#           per-message latency (MAIL FROM .. 250 after DATA), errors. postal writes the final
#           "." in a write of its own without TCP_NODELAY, so with any server its latency
#           carries a Nagle / delayed-ACK stall (~40 ms on Linux): use smtp-source's figures
#           for latency, postal's for session behaviour. Its messages are those it saw a 250
#           for: a thread stopped by the time limit may leave one more message stored.
#   pop3    Debian's rabid: min(--concurrency, number of users) POP3 clients for
#           --session-seconds seconds; each logs in as a random user (never two clients on one
#           mailbox at once), LISTs, RETRs and DELEs every message, QUITs. Sessions/s,
#           messages retrieved, session latency (greeting .. +OK after QUIT) and RETR latency.
#           The mailboxes are drained: rabid deletes what it retrieves (with a delete
#           percentage below 100 rabid 0.75 stalls 10 s after each kept message).
# postal and rabid print nothing useful in a run shorter than a minute, so their transcripts
# (-z) go through FIFOs into a reader that timestamps each protocol line as it arrives.
#
# options (flag, environment variable, default):
#   -n, --messages N         LOAD_MESSAGES          1000   messages smtp-source sends
#   -c, --concurrency N      LOAD_CONCURRENCY       10     parallel sessions in every phase
#   -s, --size BYTES         LOAD_SIZE              10240  message body size (1k, 64K: x1024);
#                                                          postal rounds it to whole KiB
#   -u, --users SPEC         LOAD_USERS             u0..u49@bench.test
#                            recipients/mailboxes: a file (one "address [password]" a line,
#                            # comments), or a comma list of addresses and ranges such as
#                            u0..u49@bench.test or load0..9@example.test
#   -p, --password PW        LOAD_PASSWORD          pw     POP3 password (when the file has none)
#   -d, --duration SECONDS   LOAD_DURATION          120    hard limit for the whole run
#   -t, --session-seconds S  LOAD_SESSION_SECONDS   10     how long postal and rabid each run
#   --phases LIST            LOAD_PHASES            smtp,postal,pop3
#   --from ADDR              LOAD_FROM              load@remote.test   envelope sender
#   --helo NAME              LOAD_HELO              load.test          smtp-source's HELO name
#   --new-connection         LOAD_NEW_CONNECTION=1  one message per connection for smtp-source
#   --no-fail                LOAD_FAIL_ON_ERRORS=0  exit 0 even when errors were counted
#   -h, --help
# The smtp phase gets what --duration leaves after the timed phases (each session phase counts
# --session-seconds + 3 s); a message it could not send in time counts as "unsent", not as an
# error. Every tool runs under `timeout`. Keep --concurrency below the front-end's
# --max-connections-per-ip (behind HAProxy with PROXY headers: per real client address).
#
# Output: a few human-readable lines, then one machine-readable line:
#   LOAD_SUMMARY key=value ...   (latencies in ms, "na" when there were no samples)
# Exit status: 0; 1 when errors > 0 (unless --no-fail); 2 usage; 3 tools missing
# (tests/install-load-tools.sh installs them: postfix, postal, perl).
set -uo pipefail

usage() { sed -n '2,/^[^#]/{/^#/{s/^# \{0,1\}//;p}}' "$0"; }
die() { echo "load.sh: $*" >&2; exit 2; }

tool() { # name -> path, from PATH or /usr/sbin (smtp-source, postal, rabid live there)
    local p
    p=$(command -v "$1" 2>/dev/null) && { echo "$p"; return 0; }
    [ -x "/usr/sbin/$1" ] && { echo "/usr/sbin/$1"; return 0; }
    return 1
}

check_tools() {
    local ok=0 t
    for t in smtp-source postal rabid timeout mkfifo; do
        tool "$t" >/dev/null || { echo "load.sh: $t is not installed" >&2; ok=3; }
    done
    perl -MTime::HiRes -e 1 >/dev/null 2>&1 || { echo "load.sh: perl with Time::HiRes is not installed" >&2; ok=3; }
    [ "$ok" = 0 ] || echo "load.sh: run tests/install-load-tools.sh (Debian packages postfix, postal, perl)" >&2
    return "$ok"
}

messages=${LOAD_MESSAGES:-1000}
concurrency=${LOAD_CONCURRENCY:-10}
size=${LOAD_SIZE:-10240}
users_spec=${LOAD_USERS:-u0..u49@bench.test}
password=${LOAD_PASSWORD:-pw}
duration=${LOAD_DURATION:-120}
session_seconds=${LOAD_SESSION_SECONDS:-10}
phases=${LOAD_PHASES:-smtp,postal,pop3}
from=${LOAD_FROM:-load@remote.test}
helo=${LOAD_HELO:-load.test}
new_connection=${LOAD_NEW_CONNECTION:-0}
fail_on_errors=${LOAD_FAIL_ON_ERRORS:-1}

positional=()
while [ $# -gt 0 ]; do
    arg=$1
    val=""
    case $arg in
        --*=*) val=${arg#*=}; arg=${arg%%=*}; set -- "$arg" "$val" "${@:2}" ;;
    esac
    case $arg in
        -h | --help) usage; exit 0 ;;
        --check-tools) check_tools; exit $? ;;
        --new-connection) new_connection=1; shift; continue ;;
        --no-fail) fail_on_errors=0; shift; continue ;;
        -n | --messages | -c | --concurrency | -s | --size | -u | --users | -p | --password | \
            -d | --duration | -t | --session-seconds | --phases | --from | --helo)
            [ $# -ge 2 ] || die "$arg needs a value"
            case $arg in
                -n | --messages) messages=$2 ;;
                -c | --concurrency) concurrency=$2 ;;
                -s | --size) size=$2 ;;
                -u | --users) users_spec=$2 ;;
                -p | --password) password=$2 ;;
                -d | --duration) duration=$2 ;;
                -t | --session-seconds) session_seconds=$2 ;;
                --phases) phases=$2 ;;
                --from) from=$2 ;;
                --helo) helo=$2 ;;
            esac
            shift 2 ;;
        -*) die "unknown option $arg (see --help)" ;;
        *) positional+=("$arg"); shift ;;
    esac
done
[ ${#positional[@]} -eq 2 ] || { usage >&2; exit 2; }
smtp_target=${positional[0]}
pop3_target=${positional[1]}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_uint "$messages" && [ "$messages" -le 10000000 ] || die "--messages: 0..10000000"
is_uint "$concurrency" && [ "$concurrency" -ge 1 ] && [ "$concurrency" -le 200 ] || die "--concurrency: 1..200"
is_uint "$duration" && [ "$duration" -ge 1 ] || die "--duration: whole seconds >= 1"
is_uint "$session_seconds" && [ "$session_seconds" -ge 1 ] || die "--session-seconds: whole seconds >= 1"
case $size in
    *[kK]) is_uint "${size%?}" || die "--size: bytes, or KiB with a k suffix"; size=$(( ${size%?} * 1024 )) ;;
    *) is_uint "$size" || die "--size: bytes, or KiB with a k suffix" ;;
esac
[ "$size" -le $((50 * 1024 * 1024)) ] || die "--size: at most 50 MiB"
run_smtp=0 run_postal=0 run_pop3=0
IFS=, read -r -a phase_list <<<"$phases"
for ph in "${phase_list[@]}"; do
    case $ph in
        smtp) run_smtp=1 ;; postal) run_postal=1 ;; pop3) run_pop3=1 ;;
        *) die "--phases: a comma list of smtp, postal, pop3" ;;
    esac
done
[ "$messages" -gt 0 ] || run_smtp=0

split_target() { # HOST:PORT -> "host port"
    local host=${1%:*} port=${1##*:}
    [ -n "$host" ] && [ "$host" != "$1" ] && is_uint "$port" && [ "$port" -ge 1 ] && [ "$port" -le 65535 ] ||
        die "$1: expected HOST:PORT (IPv4 address or host name)"
    echo "$host $port"
}
read -r smtp_host smtp_port <<<"$(split_target "$smtp_target")" || exit 2
read -r pop3_host pop3_port <<<"$(split_target "$pop3_target")" || exit 2
[ -n "${smtp_port:-}" ] && [ -n "${pop3_port:-}" ] || exit 2

# --users -> addrs[] and pws[]
addrs=()
pws=()
add_user() {
    [[ $1 == ?*@?* && $1 != *[[:space:]\<\>]* ]] || die "--users: '$1' is not an address"
    addrs+=("$1")
    pws+=("${2:-$password}")
}
expand_item() { # address, or PREFIX<a>..[PREFIX]<b>@domain
    local item=$1
    if [[ $item == *..*@* ]]; then
        local local_part=${item%@*} domain=${item##*@}
        local left=${local_part%%..*} right=${local_part#*..}
        local a=${left##*[!0-9]} b=${right##*[!0-9]}
        local prefix=${left%"$a"} rprefix=${right%"$b"}
        [ -n "$a" ] && [ -n "$b" ] && { [ -z "$rprefix" ] || [ "$rprefix" = "$prefix" ]; } ||
            die "--users: bad range '$item' (e.g. u0..u49@bench.test)"
        [ $((10#$b - 10#$a)) -ge 0 ] && [ $((10#$b - 10#$a)) -lt 100000 ] || die "--users: bad range '$item'"
        local i
        for ((i = 10#$a; i <= 10#$b; i++)); do add_user "$prefix$i@$domain"; done
    else
        add_user "$item"
    fi
}
if [ -f "$users_spec" ]; then
    while read -r u p _; do
        [[ -z $u || $u == \#* ]] && continue
        add_user "$u" "$p"
    done <"$users_spec"
else
    IFS=, read -r -a items <<<"$users_spec"
    for item in "${items[@]}"; do [ -n "$item" ] && expand_item "$item"; done
fi
[ ${#addrs[@]} -gt 0 ] || die "--users: no addresses"
nusers=${#addrs[@]}

check_tools || exit 3
SMTP_SOURCE=$(tool smtp-source)
POSTAL=$(tool postal)
RABID=$(tool rabid)

# Time budget: the smtp phase gets what the session phases leave.
start_s=$(date +%s)
reserve=0
[ "$run_postal" = 1 ] && reserve=$((reserve + session_seconds + 3))
[ "$run_pop3" = 1 ] && reserve=$((reserve + session_seconds + 3))
smtp_deadline=$((start_s + duration - reserve))
if [ "$run_smtp" = 1 ] && [ $((smtp_deadline - start_s)) -lt 1 ]; then
    die "--duration $duration leaves no time for the smtp phase after $reserve s of session phases"
fi
[ "$reserve" -le "$duration" ] || die "--duration $duration is shorter than the session phases ($reserve s)"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/mailroot-load.XXXXXX")
children=()
kill_tree() { # pid: the process and its descendants (timeout forwards TERM to its command)
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$c"; done
    kill -TERM "$1" 2>/dev/null
}
cleanup() {
    local p
    for p in "${children[@]}"; do kill_tree "$p"; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "load.sh: interrupted" >&2; exit 130' INT TERM

# One perl program for the timestamping readers and the statistics.
cat >"$tmp/load.pl" <<'PERL'
use strict;
use warnings;
use Time::HiRes qw(time);
use POSIX qw(ceil);
$| = 1;
my $mode = shift @ARGV;

# Lines from a byte stream, each with the time its bytes arrived.
sub each_line {
    my ($fh, $cb) = @_;
    my $buf = '';
    while (sysread($fh, my $chunk, 65536)) {
        my $now = time;
        $buf .= $chunk;
        my @lines = split /[\r\n]+/, $buf, -1;
        $buf = pop @lines;
        $cb->($_, $now) for grep { $_ ne '' } @lines;
    }
}
sub ms { sprintf '%.3f', ($_[0] - $_[1]) * 1000 }

if ($mode eq 'counter') {
    # smtp-source -c prints "N\r" when transaction N completes; the worker adds START before
    # a connection, END count status after it, SKIP count for a chunk it had no time for.
    my ($t0, $last);
    each_line(\*STDIN, sub {
        my ($tok, $now) = @_;
        # The first completion of a process also carries its start-up, connect, greeting
        # and EHLO: it only starts the clock.
        if ($tok eq 'START') { ($t0, $last) = (undef, 0) }
        elsif ($tok =~ /\A\d+\z/) { print 'M ', ms($now, $t0), "\n" if defined $t0; ($t0, $last) = ($now, $tok) }
        elsif ($tok =~ /\AEND (\d+) (\d+)\z/) { print "X $1 ", ($last // 0), " $2\n"; undef $t0 }
        elsif ($tok =~ /\ASKIP (\d+)\z/) { print "X $1 0 skip\n" }
    });
} elsif ($mode eq 'smtp' || $mode eq 'pop3') {
    # A postal (smtp) or rabid (pop3) transcript, from its -z FIFO. Events: C connection,
    # M message ms, S session ms, R retr ms, E error, I mailbox in use (not an error).
    open(my $in, '<', $ARGV[0]) or die "$ARGV[0]: $!";
    binmode $in;
    my ($last, $tsess, $tcmd, $block) = ('GREETING', 0, 0, 0);
    if ($mode eq 'smtp') {
        each_line($in, sub {
            my ($l, $now) = @_;
            if ($block) { ($block, $last) = (0, '.') if $l eq '.'; return }
            if ($l =~ /\A(\d{3})(-?)/) {
                return if $2 eq '-';
                my $code = $1;
                if ($code == 220) { ($tsess, $last) = ($now, 'GREETING'); print "C\n" }
                elsif ($code =~ /\A[45]/) { print "E $last -> $l\n" }
                elsif ($last eq 'DATA' && $code == 354) { $block = 1 }
                elsif ($last eq '.') { print 'M ', ms($now, $tcmd), "\n" }
                elsif ($last eq 'QUIT') { print 'S ', ms($now, $tsess), "\n" }
                return;
            }
            my ($verb) = $l =~ /\A(\S+)/;
            $last = uc($verb // '');
            $tcmd = $now if $last eq 'MAIL';
        });
    } else {
        each_line($in, sub {
            my ($l, $now) = @_;
            if ($block) {
                if ($l eq '.') { $block = 0; print 'R ', ms($now, $tcmd), "\n" if $last eq 'RETR' }
                return;
            }
            if ($l =~ /\A\+OK/) {
                if ($last eq 'GREETING') { $tsess = $now; print "C\n" }
                elsif ($last =~ /\A(CAPA|LIST|RETR|UIDL|TOP)\z/) { $block = 1 }
                elsif ($last eq 'QUIT') { print 'S ', ms($now, $tsess), "\n"; $last = 'GREETING' }
                return;
            }
            if ($l =~ /\A-ERR/) {
                return if $last eq 'CAPA';    # no CAPA is fine for rabid
                print(($l =~ /\[IN-USE\]/ ? 'I' : 'E'), " $last -> $l\n");
                $last = 'GREETING';           # rabid drops the connection after it
                return;
            }
            my ($verb, $arg) = $l =~ /\A(\S+)\s*(.*)\z/;
            $last = uc($verb // '');
            $last = 'LIST1' if $last eq 'LIST' && $arg ne '';
            $tcmd = $now if $last eq 'RETR';
        });
    }
} elsif ($mode eq 'pct') {
    # pct TYPE FILES: count p50 p90 p99 max of the TYPE samples (nearest rank)
    my $type = shift @ARGV;
    my @v;
    for my $f (@ARGV) {
        open(my $h, '<', $f) or next;
        while (<$h>) { push @v, $1 if /\A\Q$type\E (\S+)/ }
    }
    @v = sort { $a <=> $b } @v;
    my $n = @v;
    my $p = sub { $n ? sprintf('%.1f', $v[ceil($_[0] / 100 * $n) - 1]) : 'na' };
    print join(' ', $n, $p->(50), $p->(90), $p->(99), $n ? sprintf('%.1f', $v[-1]) : 'na'), "\n";
} elsif ($mode eq 'count') {
    # count TYPE FILES: number of TYPE events
    my $type = shift @ARGV;
    my $n = 0;
    for my $f (@ARGV) { open(my $h, '<', $f) or next; while (<$h>) { $n++ if /\A\Q$type\E(?: |$)/ } }
    print "$n\n";
} elsif ($mode eq 'chunks') {
    # chunks FILES: requested sent failed unsent over smtp-source's "X count sent status"
    my ($req, $sent, $failed, $unsent) = (0, 0, 0, 0);
    for my $f (@ARGV) {
        open(my $h, '<', $f) or next;
        while (<$h>) {
            next unless /\AX (\d+) (\d+) (\S+)/;
            my ($count, $ok, $st) = ($1, $2, $3);
            $ok = $count if $ok > $count;
            $req += $count;
            $sent += $ok;
            # stopped by the time limit (skip, or timeout's 124 / KILL's 137): unsent
            if ($st eq 'skip' || $st == 124 || $st == 137) { $unsent += $count - $ok } else { $failed += $count - $ok }
        }
    }
    print "$req $sent $failed $unsent\n";
} elsif ($mode eq 'rate') {
    # rate N T0 T1: N / (T1 - T0)
    my ($n, $t0, $t1) = @ARGV;
    printf "%.1f\n", $t1 > $t0 ? $n / ($t1 - $t0) : 0;
} elsif ($mode eq 'secs') {
    printf "%.2f\n", $ARGV[1] - $ARGV[0];
} else {
    die "unknown mode $mode";
}
PERL

pl() { perl "$tmp/load.pl" "$@"; }
now_s() { printf '%(%s)T' -1; }
# Distinct lines (at most 5) of some files, indented.
top5() { sort | uniq -c | sort -rn | head -5 | sed 's/^/      /'; }
# postal's / rabid's own complaints on stderr (connect failures, timeouts, MD5 mismatches).
# "Server error:REPLY." repeats an E event of the transcript; postal prints REPLY with its
# CRLF, so its "." lands on a line of its own.
complaints() { tr -d '\r' <"$1" | grep -vE '^(Server error:.*|\.|)$'; }

# Session-phase helper: FIFOs base:1..N with a timestamping reader each, the tool under
# `timeout` for session_seconds, then the readers drained. Sets t0/t1.
run_timed() { # dir mode nthreads -- command...
    local dir=$1 mode=$2 n=$3 i
    shift 4
    mkdir -p "$dir"
    local readers=()
    for ((i = 1; i <= n; i++)); do
        mkfifo "$dir/dbg:$i"
        pl "$mode" "$dir/dbg:$i" >"$dir/events.$i" &
        readers+=($!)
        children+=($!)
    done
    t0=$EPOCHREALTIME
    (cd "$dir" && exec timeout -k 2 -s TERM "$session_seconds" "$@" >"$dir/stdout" 2>"$dir/stderr") &
    children+=($!)
    wait $!
    t1=$EPOCHREALTIME
    # A reader whose thread never connected still waits in open(): give it a writer and EOF.
    for ((i = 1; i <= n; i++)); do : 2>/dev/null <>"$dir/dbg:$i"; done
    for i in "${readers[@]}"; do wait "$i"; done
}

errors_total=0
summary="LOAD_SUMMARY"
echo "load: SMTP $smtp_target, POP3 $pop3_target, $nusers users (${addrs[0]} ..), concurrency $concurrency, size $size B, phases $phases, limit ${duration}s"

# ---------------------------------------------------------------- smtp: smtp-source
if [ "$run_smtp" = 1 ]; then
    workers=$concurrency
    [ "$messages" -lt "$workers" ] && workers=$messages
    dflag=-d
    [ "$new_connection" = 1 ] && dflag=""
    smtp_worker() { # i: its users i, i+workers, ...; its share of the messages split over them
        local i=$1
        local mine=$((messages / workers + (i < messages % workers ? 1 : 0)))
        local rcpts=() j k count remaining
        if [ "$nusers" -ge "$workers" ]; then
            for ((j = i; j < nusers; j += workers)); do rcpts+=("${addrs[j]}"); done
        else
            rcpts=("${addrs[i % nusers]}")
        fi
        for ((k = 0; k < ${#rcpts[@]}; k++)); do
            count=$((mine / ${#rcpts[@]} + (k < mine % ${#rcpts[@]} ? 1 : 0)))
            [ "$count" -gt 0 ] || continue
            remaining=$((smtp_deadline - $(now_s)))
            if [ "$remaining" -le 0 ]; then echo "SKIP $count"; continue; fi
            echo START
            timeout -k 1 -s TERM "$remaining" "$SMTP_SOURCE" -c $dflag -A -m "$count" -l "$size" \
                -f "$from" -t "${rcpts[k]}" -M "$helo" "inet:$smtp_host:$smtp_port" 2>>"$tmp/smtp.$i.err"
            echo "END $count $?"
        done | pl counter >"$tmp/smtp.$i.events"
    }
    t0=$EPOCHREALTIME
    pids=()
    for ((w = 0; w < workers; w++)); do
        smtp_worker "$w" &
        pids+=($!)
        children+=($!)
    done
    for p in "${pids[@]}"; do wait "$p"; done
    t1=$EPOCHREALTIME
    read -r req sent failed unsent <<<"$(pl chunks "$tmp"/smtp.*.events)"
    read -r n p50 p90 p99 max <<<"$(pl pct M "$tmp"/smtp.*.events)"
    rate=$(pl rate "$sent" "$t0" "$t1")
    secs=$(pl secs "$t0" "$t1")
    echo "smtp   (smtp-source, $workers sessions$([ -n "$dflag" ] && echo ", reused connections" || echo ", one message per connection")):"
    echo "    sent $sent of $req in ${secs}s = $rate msg/s; latency/message ms p50 $p50 p90 $p90 p99 $p99 max $max"
    echo "    errors $failed (messages not accepted), unsent $unsent (time limit)"
    [ "$failed" -gt 0 ] && cat "$tmp"/smtp.*.err | top5
    errors_total=$((errors_total + failed))
    summary+=" smtp_requested=$req smtp_sent=$sent smtp_seconds=$secs smtp_msgs_per_s=$rate"
    summary+=" smtp_p50_ms=$p50 smtp_p90_ms=$p90 smtp_p99_ms=$p99 smtp_max_ms=$max"
    summary+=" smtp_errors=$failed smtp_unsent=$unsent"
fi

# ---------------------------------------------------------------- postal: SMTP sessions
if [ "$run_postal" = 1 ]; then
    d=$tmp/postal
    mkdir -p "$d"
    printf '%s\n' "${addrs[@]}" >"$d/recipients"
    printf '%s\n' "$from" >"$d/senders"
    kb=$(((size + 512) / 1024))
    run_timed "$d" smtp "$concurrency" -- "$POSTAL" -t "$concurrency" -m "$kb" -M "$kb" -c 3 \
        -p "$smtp_port" -f "$d/senders" -z "$d/dbg" "$smtp_host" "$d/recipients"
    msgs=$(pl count M "$d"/events.*)
    sessions=$(pl count S "$d"/events.*)
    conns=$(pl count C "$d"/events.*)
    errs=$(pl count E "$d"/events.*)
    other=$(complaints "$d/stderr" | wc -l)
    errs=$((errs + other))
    read -r n p50 p90 p99 max <<<"$(pl pct M "$d"/events.*)"
    rate=$(pl rate "$msgs" "$t0" "$t1")
    srate=$(pl rate "$sessions" "$t0" "$t1")
    echo "postal ($concurrency threads, ${kb} KiB, 1..3 messages/connection, ${session_seconds}s):"
    echo "    messages $msgs = $rate msg/s, sessions $sessions = $srate/s ($conns connections);" \
        "latency/message ms p50 $p50 p90 $p90 p99 $p99 max $max; errors $errs"
    if [ "$errs" -gt 0 ]; then
        cat "$d"/events.* | grep '^E ' | top5
        complaints "$d/stderr" | top5
    fi
    errors_total=$((errors_total + errs))
    summary+=" postal_msgs=$msgs postal_msgs_per_s=$rate postal_sessions=$sessions postal_sessions_per_s=$srate"
    summary+=" postal_p50_ms=$p50 postal_p90_ms=$p90 postal_p99_ms=$p99 postal_errors=$errs"
fi

# ---------------------------------------------------------------- pop3: rabid
if [ "$run_pop3" = 1 ]; then
    d=$tmp/pop3
    mkdir -p "$d"
    # rabid never puts two clients on one mailbox, and spins when it cannot: at most one
    # client per user.
    procs=$concurrency
    [ "$nusers" -lt "$procs" ] && procs=$nusers
    for ((i = 0; i < nusers; i++)); do printf '%s %s\n' "${addrs[i]}" "${pws[i]}"; done >"$d/users"
    run_timed "$d" pop3 "$procs" -- "$RABID" -p "$procs" -z "$d/dbg" "[$pop3_host]$pop3_port" "$d/users"
    sessions=$(pl count S "$d"/events.*)
    conns=$(pl count C "$d"/events.*)
    retrieved=$(pl count R "$d"/events.*)
    in_use=$(pl count I "$d"/events.*)
    errs=$(pl count E "$d"/events.*)
    other=$(complaints "$d/stderr" | wc -l)
    errs=$((errs + other))
    read -r n p50 p90 p99 max <<<"$(pl pct S "$d"/events.*)"
    read -r rn r50 r90 r99 rmax <<<"$(pl pct R "$d"/events.*)"
    srate=$(pl rate "$sessions" "$t0" "$t1")
    rrate=$(pl rate "$retrieved" "$t0" "$t1")
    echo "pop3   (rabid, $procs clients, RETR+DELE all, ${session_seconds}s):"
    echo "    sessions $sessions = $srate/s ($conns connections), retrieved $retrieved = $rrate msg/s;" \
        "latency/session ms p50 $p50 p90 $p90 p99 $p99 max $max; RETR ms p50 $r50 p90 $r90 p99 $r99"
    echo "    errors $errs, mailbox in use $in_use"
    if [ "$errs" -gt 0 ] || [ "$in_use" -gt 0 ]; then
        cat "$d"/events.* | grep -E '^[EI] ' | top5
        complaints "$d/stderr" | top5
    fi
    errors_total=$((errors_total + errs))
    summary+=" pop3_sessions=$sessions pop3_sessions_per_s=$srate pop3_retrieved=$retrieved"
    summary+=" pop3_retrieved_per_s=$rrate pop3_p50_ms=$p50 pop3_p90_ms=$p90 pop3_p99_ms=$p99"
    summary+=" pop3_retr_p50_ms=$r50 pop3_retr_p99_ms=$r99 pop3_in_use=$in_use pop3_errors=$errs"
fi

echo "$summary errors=$errors_total"
if [ "$errors_total" -gt 0 ] && [ "$fail_on_errors" = 1 ]; then exit 1; fi
exit 0
