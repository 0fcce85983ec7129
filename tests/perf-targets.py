#!/usr/bin/env python3
"""Checks one side-by-side result directory of ../shared/bench (compare.sh) against the
targets of issue 9 and prints a Markdown table. usage: perf-targets.py RESULT_DIR
SMTP: mailroot's accepted msg/s (its 250 means stored) over the baseline's delivered msg/s;
POP3: sessions/s over Dovecot's; failures; mailroot's peak RSS (store + front-end)."""
import json
import os
import sys


def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip().startswith("{")]


def main():
    d = sys.argv[1]
    smtp = rows(os.path.join(d, "smtp.jsonl"))
    pop3 = rows(os.path.join(d, "pop3.jsonl"))
    by = {}
    for r in smtp:
        by.setdefault((r["size"], r["sessions"]), {})[r["label"]] = r
    out = ["| check | mailroot | baseline | ratio | target | met |", "|---|---|---|---|---|---|"]
    ok_all = True

    def line(name, t, b, need):
        nonlocal ok_all
        ratio = t / b if b else float("inf")
        met = ratio >= need
        ok_all &= met
        out.append("| %s | %.1f | %.1f | %.2fx | >= %gx | %s |" % (name, t, b, ratio, need, "yes" if met else "**no**"))

    for (size, sess), v in sorted(by.items()):
        if "base" not in v or "target" not in v:
            continue
        need = 5 if sess in (10, 50) and size in (1024, 10240) else 2
        line("SMTP %d B x %d sessions: accepted vs delivered msg/s" % (size, sess),
             v["target"]["msgs_per_s"], v["base"]["delivered_msgs_per_s"], need)
    for r in [r for r in pop3 if r["label"] == "target"]:
        base = [b for b in pop3 if b["label"] == "base" and b["clients"] == r["clients"]]
        if base:
            line("POP3 %d clients: sessions/s" % r["clients"], r["sessions_per_s"], base[0]["sessions_per_s"], 2)
    failed = sum(r.get("failed", 0) for r in smtp + pop3 if r["label"] == "target")
    failed += sum(r.get("sessions_total", 0) - r.get("sessions_ok", 0) for r in pop3 if r["label"] == "target")
    ok_all &= failed == 0
    out.append("| failed messages or sessions (mailroot) | %d | | | 0 | %s |" % (failed, "yes" if failed == 0 else "**no**"))
    mem = os.path.join(d, "mem-target.json")
    if os.path.exists(mem):
        peak = json.load(open(mem))["peak"]["rss_kb"] / 1024
        ok_all &= peak <= 130
        out.append("| peak RSS, store + front-end (MB) | %.1f | | | <= 130 | %s |" % (peak, "yes" if peak <= 130 else "**no**"))
    print("\n".join(out))
    print()
    print("All targets met." if ok_all else "Not every target is met in this run (rows marked **no**).")


main()
