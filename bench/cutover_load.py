#!/usr/bin/env python3
"""Load generator and checker for bench/cutover_bench.sh (python3 stdlib only).

  cutover_load.py load --port P --out FILE [--writers 8] [--rate 200] [--get-ratio 0.25]
                       [--first 1001] [--last 2000]
      Writers send PUT /api/drivers/{id}/location through the proxy at about --rate writes/s in
      all (paced, no bursts to catch up after a stall). Writer w owns the drivers with
      id % writers == w; every write of a driver carries that driver's next counter in its
      latitude: lat = 37 + counter * 1e-5 (exact in the legacy micro-degrees). Every write also
      sends, with probability --get-ratio, a GET of one of the writer's drivers. Requests carry
      X-User-Id = the driver id (the route's sticky header). Runs until SIGTERM/SIGINT, then
      writes every request's timing and status, the last acknowledged counter per driver and
      every failed request to --out.

  cutover_load.py report --load FILE --cutovers TSV --proxy P [--monolith P --service P]
                         [--verify FILE --verify-rc RC] [--caught-up 0|1] [--engine NAME]
      Reads what `load` wrote and the cutover commands' timings and outputs, reads every driver
      with an acknowledged write back through the proxy (and, for information, from both
      backends directly) and prints the figures. Exit 1 when an acknowledged write is not
      served, a cutover failed, the sync did not catch up or verify is not identical.
"""
import argparse
import http.client
import json
import random
import signal
import statistics
import sys
import threading
import time


class Client:
    """One keep-alive connection; any transport error closes it and counts as status 0."""

    def __init__(self, port, timeout=10.0):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None, headers=None):
        wall = time.time()
        start = time.perf_counter()
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            data = response.read()
            status = response.status
            if response.will_close:
                self.close()
        except Exception as e:  # noqa: BLE001 - every failure is recorded, none retried
            status, data = 0, repr(e).encode()
            self.close()
        return status, data, wall, (time.perf_counter() - start) * 1000.0

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001
                pass
            self.conn = None


def counter_lat(counter):
    return 37.0 + counter * 1e-5


def run_load(args):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    interval = args.writers / args.rate
    results = [None] * args.writers

    def writer(w):
        rng = random.Random(w + 1)
        mine = [d for d in range(args.first, args.last + 1) if d % args.writers == w]
        counters = {d: 0 for d in mine}
        acked = {}
        unacked = {}  # driver -> counters of failed writes sent after its last acknowledged one
        writes, gets, failures = [], [], []
        client = Client(args.port)
        next_at = time.monotonic() + rng.random() * interval
        while not stop.is_set():
            now = time.monotonic()
            if next_at > now:
                if stop.wait(next_at - now):
                    break
            elif now - next_at > interval:
                next_at = now  # stalled (e.g. a held write): no burst to catch up
            next_at += interval
            driver = rng.choice(mine)
            counters[driver] += 1
            counter = counters[driver]
            body = '{"lat": %.5f, "lng": 127.0}' % counter_lat(counter)
            path = "/api/drivers/%d/location" % driver
            headers = {"X-User-Id": str(driver), "Content-Type": "application/json"}
            status, data, wall, ms = client.request("PUT", path, body, headers)
            writes.append([wall, ms, status, driver, counter])
            if status == 200:
                acked[driver] = counter
                unacked.pop(driver, None)
            else:
                unacked.setdefault(driver, []).append(counter)
                failures.append({"t": wall, "ms": round(ms, 1), "method": "PUT", "path": path,
                                 "counter": counter, "status": status,
                                 "body": data[:300].decode("utf-8", "replace")})
            if rng.random() < args.get_ratio:
                driver = rng.choice(mine)
                path = "/api/drivers/%d" % driver
                status, data, wall, ms = client.request("GET", path, None, {"X-User-Id": str(driver)})
                gets.append([wall, ms, status])
                if status != 200:
                    failures.append({"t": wall, "ms": round(ms, 1), "method": "GET", "path": path,
                                     "status": status, "body": data[:300].decode("utf-8", "replace")})
        client.close()
        results[w] = {"writes": writes, "gets": gets, "failures": failures, "acked": acked,
                      "unacked": unacked}

    started = time.time()
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(args.writers)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        for t in threads:
            t.join(0.2)
    out = {"started": started, "stopped": time.time(), "writers": args.writers, "rate": args.rate,
           "writes": [], "gets": [], "failures": [], "acked": {}, "unacked": {}}
    for r in results:
        out["writes"] += r["writes"]
        out["gets"] += r["gets"]
        out["failures"] += r["failures"]
        out["acked"].update({str(k): v for k, v in r["acked"].items()})
        out["unacked"].update({str(k): v for k, v in r["unacked"].items()})
    out["failures"].sort(key=lambda f: f["t"])
    with open(args.out, "w") as f:
        json.dump(out, f)
    return 0


def pct(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))]


def parse_json_output(path):
    text = open(path).read()
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:text.rfind("}") + 1])
    except ValueError:
        return None


def served_lat(port, driver):
    status, data, _, _ = Client(port).request("GET", "/api/drivers/%d" % driver, None,
                                              {"X-User-Id": str(driver)})
    if status != 200:
        return None, status
    return json.loads(data)["location"]["lat"], status


def run_report(args):
    load = json.load(open(args.load))
    ok = True
    # The cutover commands: index, kind, start, end (wall clock, s), exit code, output file.
    cutovers = []
    for line in open(args.cutovers):
        i, kind, t0, t1, rc, out = line.rstrip("\n").split("\t")
        cutovers.append({"i": int(i), "kind": kind, "t0": float(t0), "t1": float(t1),
                         "rc": int(rc), "report": parse_json_output(out), "out": out})
    failed_cutovers = [c for c in cutovers if c["rc"] != 0 or c["report"] is None]
    windows = [(c["t0"], c["t1"]) for c in cutovers]

    def in_window(t0, ms):
        t1 = t0 + ms / 1000.0
        return any(t0 <= w1 and t1 >= w0 for w0, w1 in windows)

    writes = load["writes"]
    duration = load["stopped"] - load["started"]
    outside = [w[1] for w in writes if w[2] == 200 and not in_window(w[0], w[1])]
    inside = [w[1] for w in writes if w[2] == 200 and in_window(w[0], w[1])]
    acknowledged = sum(1 for w in writes if w[2] == 200)
    w503 = sum(1 for w in writes if w[2] == 503)
    wother = sum(1 for w in writes if w[2] not in (200, 503))
    gets = load["gets"]
    g503 = sum(1 for g in gets if g[2] == 503)
    gother = sum(1 for g in gets if g[2] not in (200, 503))

    # Every acknowledged write: the proxy serves it (and, for information, both sides hold it).
    lost, applied_unacked, unreadable = [], [], []
    side_mismatch = {"monolith": 0, "service": 0}
    for key, counter in sorted(load["acked"].items(), key=lambda kv: int(kv[0])):
        driver = int(key)
        want = round(counter_lat(counter), 6)
        got, status = served_lat(args.proxy, driver)
        if got is None:
            unreadable.append((driver, status))
            continue
        got = round(got, 6)
        if abs(got - want) > 1e-7:
            served_counter = round((got - 37.0) / 1e-5)
            if served_counter in load["unacked"].get(key, []):
                applied_unacked.append((driver, counter, served_counter))
            else:
                lost.append((driver, counter, served_counter))
        for side, port in (("monolith", args.monolith), ("service", args.service)):
            if port:
                lat, _ = served_lat(port, driver)
                if lat is None or abs(round(lat, 6) - want) > 1e-7:
                    side_mismatch[side] += 1

    verify = parse_json_output(args.verify) if args.verify else None
    verify_identical = bool(verify and verify.get("identical") is True and args.verify_rc == 0)

    pauses = [c["report"]["write_pause_ms"] for c in cutovers if c["report"]]
    held = [c["report"].get("held_requests", 0) for c in cutovers if c["report"]]
    elapsed = [c["report"].get("elapsed_ms", 0) for c in cutovers if c["report"]]
    p99_write = pct(outside, 99)
    name = args.engine or "?"
    print("== cutover bench: %s ==" % name)
    print("cutovers: %d run, %d failed (%d extract, %d rollback)" % (
        len(cutovers), len(failed_cutovers), sum(c["kind"] == "extract" for c in cutovers),
        sum(c["kind"] == "rollback" for c in cutovers)))
    for c in cutovers:
        r = c["report"] or {}
        print("  #%-2d %-8s rc=%d write_pause_ms=%s held_requests=%s drained=%s fenced_after_ms=%s elapsed_ms=%s cmd_ms=%.0f" % (
            c["i"], c["kind"], c["rc"], r.get("write_pause_ms"), r.get("held_requests"),
            json.dumps(r.get("drained"), separators=(",", ":")), r.get("fenced_after_ms"), r.get("elapsed_ms"),
            (c["t1"] - c["t0"]) * 1000))
    if pauses:
        print("write pause (ms): p50 %.0f, max %d over %d cutovers (extract max %s, rollback max %s)" % (
            statistics.median(pauses), max(pauses), len(pauses),
            max([c["report"]["write_pause_ms"] for c in cutovers if c["report"] and c["kind"] == "extract"], default="-"),
            max([c["report"]["write_pause_ms"] for c in cutovers if c["report"] and c["kind"] == "rollback"], default="-")))
        print("held requests per cutover: median %.0f, max %d, total %d; cutover elapsed_ms p50 %.0f, max %d" % (
            statistics.median(held), max(held), sum(held), statistics.median(elapsed), max(elapsed)))
    print("anchor, acknowledged writes outside any cutover command (%d): p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
        len(outside), pct(outside, 50), p99_write, max(outside, default=float("nan"))))
    print("writes overlapping a cutover command (%d): p50 %.1f ms, p99 %.1f ms, max %.1f ms" % (
        len(inside), pct(inside, 50), pct(inside, 99), max(inside, default=float("nan"))))
    if pauses and outside:
        print("ratio max pause / p99 write: %.1f" % (max(pauses) / p99_write))
    print("writes: sent %d (%.0f/s over %.1f s), acknowledged %d, failed %d (503: %d, other: %d), lost %d" % (
        len(writes), len(writes) / duration if duration else 0, duration, acknowledged,
        w503 + wother, w503, wother, len(lost)))
    print("gets: sent %d, failed %d (503: %d, other: %d)" % (len(gets), g503 + gother, g503, gother))
    print("drivers checked through the proxy: %d (lost %d, unreadable %d, a failed write applied %d);"
          " directly: monolith differs %d, service differs %d" % (
              len(load["acked"]), len(lost), len(unreadable), len(applied_unacked),
              side_mismatch["monolith"], side_mismatch["service"]))
    print("sync caught up: %s; sync verify: %s" % (
        "yes" if args.caught_up else "NO",
        "identical" if verify_identical else "NOT IDENTICAL (rc %s): %s" % (args.verify_rc, json.dumps(verify))))
    failures = load["failures"]
    if failures:
        print("failed requests (first 10 of %d):" % len(failures))
        for f in failures[:10]:
            print("  %s %s -> %s after %.0f ms: %s" % (f["method"], f["path"], f["status"], f["ms"], f["body"][:160]))
    for driver, counter, served in lost[:20]:
        print("  LOST: driver %d last acknowledged counter %d, proxy serves counter %d" % (driver, counter, served))
    for driver, status in unreadable[:20]:
        print("  UNREADABLE: driver %d GET -> %s" % (driver, status))
    for c in failed_cutovers:
        print("  FAILED CUTOVER #%d %s rc=%d, output:\n%s" % (c["i"], c["kind"], c["rc"], open(c["out"]).read()))
    goal = pauses and max(pauses) <= 1000 and not lost
    print("goal (max pause <= 1000 ms, 0 lost writes): %s" % ("met" if goal else "NOT met"))
    if lost or unreadable or failed_cutovers or not verify_identical or not args.caught_up:
        ok = False
    return 0 if ok else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    load = sub.add_parser("load")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--out", required=True)
    load.add_argument("--writers", type=int, default=8)
    load.add_argument("--rate", type=float, default=200.0)
    load.add_argument("--get-ratio", type=float, default=0.25)
    load.add_argument("--first", type=int, default=1001)
    load.add_argument("--last", type=int, default=2000)
    report = sub.add_parser("report")
    report.add_argument("--load", required=True)
    report.add_argument("--cutovers", required=True)
    report.add_argument("--proxy", type=int, required=True)
    report.add_argument("--monolith", type=int)
    report.add_argument("--service", type=int)
    report.add_argument("--verify")
    report.add_argument("--verify-rc", type=int, default=1)
    report.add_argument("--caught-up", type=int, default=0)
    report.add_argument("--engine")
    args = parser.parse_args()
    return run_load(args) if args.cmd == "load" else run_report(args)


if __name__ == "__main__":
    sys.exit(main())
