"""Helpers of bench/run.sh (standard library only).

    benchlib.py ports N             N free TCP ports on 127.0.0.1
    benchlib.py wait-port PORT...   wait (5 s at most) until each accepts
    benchlib.py probe URL json|sse  one chat request; exit 1 unless it
                                    gets a 200 of the expected type
    benchlib.py spans DIR           decode and delete the sink's batch
                                    files: "batches spans bytes bad"
    benchlib.py report RESULTS SPANS  the table and the ratios
"""

import gzip
import json
import os
import socket
import statistics
import sys
import time
import urllib.error
import urllib.request


VARIANTS = [
    ("untraced", "(a) module loaded, no langfuse directives"),
    ("traced", "(b) langfuse_trace on"),
    ("no-module", "(c) no load_module at all"),
]


def cmd_ports(n):
    socks = []
    try:
        for _ in range(int(n)):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        print(" ".join(str(s.getsockname()[1]) for s in socks))
    finally:
        for s in socks:
            s.close()


def cmd_wait_port(*ports):
    deadline = time.monotonic() + 5
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", int(port)), 0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("port %s does not accept connections" % port)
                time.sleep(0.05)


def cmd_probe(url, mode):
    body = {"model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "ping"}]}
    headers = {"Content-Type": "application/json"}
    if mode == "sse":
        body["stream"] = True
        headers["X-Bench-Stream"] = "1"
    req = urllib.request.Request(url, json.dumps(body).encode(), headers,
                                 method="POST")
    want = "text/event-stream" if mode == "sse" else "application/json"
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            data = resp.read()
            ctype = resp.headers.get("Content-Type", "")
            status = resp.status
    except (urllib.error.URLError, OSError) as e:
        sys.exit("%s: %s" % (url, e))
    if status != 200 or not ctype.startswith(want) or b"usage" not in data:
        sys.exit("%s: status %s, type %r, %d bytes without usage"
                 % (url, status, ctype, len(data)))


def cmd_spans(spool):
    batches = spans = size = bad = 0
    for name in sorted(os.listdir(spool)):
        path = os.path.join(spool, name)
        with open(path, "rb") as f:
            raw = f.read()
        os.unlink(path)
        batches += 1
        size += len(raw)
        try:
            data = json.loads(gzip.decompress(raw))
        except (OSError, EOFError, ValueError):
            bad += 1
            continue
        for rs in data.get("resourceSpans") or []:
            for ss in rs.get("scopeSpans") or []:
                spans += len(ss.get("spans") or [])
    print(batches, spans, size, bad)


def read_tsv(path):
    with open(path) as f:
        lines = [ln.rstrip("\n").split("\t") for ln in f if ln.strip()]
    if not lines:
        return []
    head = lines[0]
    return [dict(zip(head, ln)) for ln in lines[1:]]


def fmt_ratio(x):
    return "%.3f" % x if x is not None else "-"


def cmd_report(results_path, spans_path):
    rows = read_tsv(results_path)
    modes = []
    for r in rows:
        if r["mode"] not in modes:
            modes.append(r["mode"])

    def runs(mode, variant):
        return [r for r in rows if r["mode"] == mode
                and r["variant"] == variant]

    def value(r, key):
        if key == "cpu_us":     # worker CPU time per request
            n = int(r["requests"])
            return (int(r["cpu_ticks"]) * 1e6 / int(r["clk_tck"]) / n
                    if n else 0.0)
        return float(r[key])

    def med(mode, variant, key):
        vals = [value(r, key) for r in runs(mode, variant)]
        return statistics.median(vals) if vals else None

    def per_round(mode, num, den, key):
        by_round = {}
        for r in runs(mode, den):
            by_round[r["round"]] = value(r, key)
        out = []
        for r in runs(mode, num):
            d = by_round.get(r["round"])
            if d:
                out.append(value(r, key) / d)
        return out

    print()
    print("Medians over the rounds (latency in ms, as wrk sees it):")
    print()
    head = ("mode", "variant", "req/s", "min..max req/s", "p50", "p90",
            "p99", "mean", "CPU us/req", "runs", "errors")
    fmt = "%-5s %-10s %8s %15s %7s %7s %7s %7s %10s %4s %6s"
    print(fmt % head)
    print(fmt % tuple("-" * len(h) for h in head))
    for mode in modes:
        for variant, _ in VARIANTS:
            rs = runs(mode, variant)
            if not rs:
                continue
            rps = [float(r["rps"]) for r in rs]
            errors = sum(int(r["socket_errors"]) + int(r["non2xx"])
                         for r in rs)
            print(fmt % (
                mode, variant, "%.0f" % statistics.median(rps),
                "%.0f..%.0f" % (min(rps), max(rps)),
                "%.3f" % (med(mode, variant, "p50_us") / 1000),
                "%.3f" % (med(mode, variant, "p90_us") / 1000),
                "%.3f" % (med(mode, variant, "p99_us") / 1000),
                "%.3f" % (med(mode, variant, "mean_us") / 1000),
                "%.1f" % med(mode, variant, "cpu_us"),
                len(rs), errors))
    print()
    for variant, what in VARIANTS:
        print("  %-10s %s" % (variant, what))
    print("  CPU us/req: user+system time of the nginx worker over the")
    print("  requests of the run (traced: until the sink got the spans)")

    print()
    print("RATIOS (of the medians; in brackets the range of the same ratio")
    print("taken round by round, each round's runs being back to back):")
    pairs = [
        ("traced/untraced", "req/s", "traced", "untraced", "rps"),
        ("traced/untraced", "p99", "traced", "untraced", "p99_us"),
        ("traced/untraced", "p50", "traced", "untraced", "p50_us"),
        ("traced/untraced", "CPU/req", "traced", "untraced", "cpu_us"),
        ("untraced/no-module", "req/s", "untraced", "no-module", "rps"),
        ("untraced/no-module", "p99", "untraced", "no-module", "p99_us"),
        ("untraced/no-module", "CPU/req", "untraced", "no-module", "cpu_us"),
    ]
    for mode in modes:
        print()
        for label, what, num, den, key in pairs:
            a, b = med(mode, num, key), med(mode, den, key)
            if a is None or not b:
                continue
            pr = per_round(mode, num, den, key)
            rng = " [%.3f..%.3f]" % (min(pr), max(pr)) if pr else ""
            print("  %-5s %-19s %-7s %s%s"
                  % (mode, label, what, fmt_ratio(a / b), rng))

    srows = read_tsv(spans_path) if os.path.exists(spans_path) else []
    if srows:
        print()
        print("Traced runs, what reached the sink (after the queue drained):")
        print()
        sfmt = "%-5s %9s %9s %9s %8s %11s %8s %10s"
        shead = ("mode", "wrk req", "served", "spans", "batches",
                 "gzip bytes", "dropped", "spans/req")
        print(sfmt % shead)
        print(sfmt % tuple("-" * len(h) for h in shead))
        for mode in modes:
            ss = [s for s in srows if s["mode"] == mode]
            if not ss:
                continue
            tot = {k: sum(int(s[k]) for s in ss)
                   for k in ("wrk_requests", "served", "spans", "batches",
                             "bytes", "dropped", "undecodable")}
            ratio = ("%.3f" % (tot["spans"] / tot["served"])
                     if tot["served"] else "-")
            print(sfmt % (mode, tot["wrk_requests"], tot["served"],
                          tot["spans"], tot["batches"], tot["bytes"],
                          tot["dropped"], ratio))
            if tot["undecodable"]:
                print("  %s: %d batch(es) did not decode as gzip'd JSON"
                      % (mode, tot["undecodable"]))
        print()
        print("  served: lines in the traced server's access log (wrk's")
        print("  count leaves out requests still open when it stopped);")
        print("  dropped: \"queue is full\" in the error log of nginx.")


def main(argv):
    cmds = {"ports": cmd_ports, "wait-port": cmd_wait_port,
            "probe": cmd_probe, "spans": cmd_spans, "report": cmd_report}
    if len(argv) < 2 or argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[argv[1]](*argv[2:])


if __name__ == "__main__":
    main(sys.argv)
