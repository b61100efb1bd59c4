#!/usr/bin/env python3
"""The table of an h2load benchmark (bench/h2_bench.sh, bench/grpc_bench.sh): medians over the
rounds of WORK/TARGET-c1-ROUND.txt (1 connection x 1 stream) and WORK/TARGET-c8m32-ROUND.txt
(8 connections x 32 streams), the failed requests, and strangler-proxy's ratio to nginx and
HAProxy from the same run.
  h2load_table.py WORK ROUNDS UNIT LABEL     (e.g. "req/s" "HTTP/2", or "calls/s" "gRPC")
"""
import re
import statistics
import sys

work, rounds, unit, label = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
targets = ("nginx", "haproxy", "strangler")


def parse(path):
    text = open(path).read()
    rps = float(re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", text).group(1))
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed",
                     text)
    return rps, int(done.group(4)) if done else 0


one, many = f"{label} 1x1 {unit}", f"{label} 8x32 {unit}"
print(f"{'target':<10} {one:>{len(one) + 1}} {many:>{len(many) + 1}} {'failed':>7}")
res = {}
for t in targets:
    row, failed = [], 0
    for mode in ("c1", "c8m32"):
        runs = [parse(f"{work}/{t}-{mode}-{r}.txt") for r in range(1, rounds + 1)]
        row.append(statistics.median(x[0] for x in runs))
        failed += sum(x[1] for x in runs)
    res[t] = row
    print(f"{t:<10} {row[0]:>{len(one) + 1}.0f} {row[1]:>{len(many) + 1}.0f} {failed:>7}")
for anchor in ("nginx", "haproxy"):
    s, a = res["strangler"], res[anchor]
    print(f"ratio strangler/{anchor}: {label} 1x1 {s[0] / a[0]:.2f}, 8x32 {s[1] / a[1]:.2f}")
