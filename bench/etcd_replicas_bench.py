#!/usr/bin/env python3
"""Replicas on etcd: how fast an edit reaches every replica, and what idle replicas cost etcd.

A real 3-member etcd cluster (Debian's etcd) and REPLICAS strangler-proxy replicas (1 worker
each) following one config on loopback. Then:

1. EDITS edits of the config (a route's stage flipped between `shadow` and `monolith`), each one
   compare-and-swap on the config key, sent straight to etcd. For each: the time from sending it
   to every replica reporting, in its registry entry, that it serves the new revision (p50 and
   max over the edits), next to the anchor measured on the same edits: a bare watch stream on
   the config key (the time etcd itself takes to tell a watcher). A replica's figure includes
   its own registry write after it applied the config (one more etcd round trip).
2. IDLE seconds with nothing changing: etcd's own count of the gRPC calls the replicas make
   (grpc_server_started_total, summed over the members), per method per second. Goal: no reads
   or writes at all (0 polling), only the leases' keep-alives.

    bench/etcd_replicas_bench.py [BUILD_DIR]     (environment: REPLICAS=10 EDITS=30 IDLE=20)
"""
import base64
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
PROXY = os.path.join(BUILD, "strangler-proxy", "strangler-proxy")
CLI = os.path.join(BUILD, "migrate-cli", "strangler")
ETCD = os.environ.get("STRANGLER_ETCD_BIN", "/usr/bin/etcd")
REPLICAS = int(os.environ.get("REPLICAS", "10"))
EDITS = int(os.environ.get("EDITS", "30"))
IDLE = float(os.environ.get("IDLE", "20"))
PREFIX = "/strangler/bench"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(text):
    return base64.b64encode(text.encode()).decode()


def post(port, path, body, timeout=5):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as answer:
        return json.loads(answer.read())


def get(port, path, timeout=2):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
        return answer.read().decode()


class Watch(threading.Thread):
    """A bare watch stream on `key` (or a prefix), timestamping every event as it arrives."""

    def __init__(self, port, key, prefix=False):
        super().__init__(daemon=True)
        create = {"key": b64(key)}
        if prefix:
            create["range_end"] = b64(key[:-1] + chr(ord(key[-1]) + 1))
        self.body = json.dumps({"create_request": create}).encode()
        self.port = port
        self.events = []  # (arrival time, kv key, kv value, mod_revision)
        self.ready = threading.Event()

    def run(self):
        connection = socket.create_connection(("127.0.0.1", self.port))
        connection.sendall(b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           + f"Content-Length: {len(self.body)}\r\n\r\n".encode() + self.body)
        buffer, depth, start = b"", 0, None
        while True:
            data = connection.recv(65536)
            if not data:
                return
            now = time.monotonic()
            for i in range(len(data)):
                c = data[i:i + 1]
                if c == b"{":
                    if depth == 0:
                        start = len(buffer)
                    depth += 1
                elif c == b"}":
                    depth -= 1
                buffer += c
                if c == b"}" and depth == 0:
                    message = json.loads(buffer[start:])
                    buffer = b""
                    result = message.get("result", {})
                    if result.get("created"):
                        self.ready.set()
                    for event in result.get("events", []):
                        kv = event["kv"]
                        self.events.append((now, base64.b64decode(kv["key"]).decode(),
                                            base64.b64decode(kv.get("value", "")).decode(),
                                            int(kv.get("mod_revision", 0))))


def grpc_calls(metrics_ports):
    totals = {}
    for port in metrics_ports:
        text = get(port, "/metrics")
        for method, count in re.findall(
                r'grpc_server_started_total\{[^}]*grpc_method="(\w+)"[^}]*\} (\d+)', text):
            totals[method] = totals.get(method, 0) + int(count)
    return totals


def main():
    for binary in (PROXY, CLI, ETCD):
        if not os.access(binary, os.X_OK):
            sys.exit(f"etcd_replicas_bench: {binary} is missing (build first; etcd from etcd-server)")
    work = tempfile.mkdtemp(prefix="strangler-etcd-bench.")
    processes = []
    try:
        members = [{"name": f"m{i}", "client": free_port(), "peer": free_port(),
                    "metrics": free_port()} for i in range(3)]
        cluster = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}" for m in members)
        for m in members:
            processes.append(subprocess.Popen(
                [ETCD, "--name", m["name"], "--data-dir", os.path.join(work, m["name"]),
                 "--listen-client-urls", f"http://127.0.0.1:{m['client']}",
                 "--advertise-client-urls", f"http://127.0.0.1:{m['client']}",
                 "--listen-peer-urls", f"http://127.0.0.1:{m['peer']}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{m['peer']}",
                 "--listen-metrics-urls", f"http://127.0.0.1:{m['metrics']}",
                 "--initial-cluster", cluster, "--initial-cluster-state", "new",
                 "--initial-cluster-token", "bench", "--logger", "zap", "--log-outputs",
                 os.path.join(work, m["name"] + ".log")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.time() + 60
        while True:
            try:
                if all('"true"' in get(m["metrics"], "/health") for m in members):
                    break
            except OSError:
                pass
            if time.time() > deadline:
                sys.exit("etcd_replicas_bench: the etcd cluster did not become healthy")
            time.sleep(0.1)
        endpoints = ",".join(f"127.0.0.1:{m['client']}" for m in members)
        url = f"etcd://{endpoints}{PREFIX}"
        backend = free_port()
        config = {"listen": "127.0.0.1:0", "admin": {"listen": "127.0.0.1:0"},
                  "upstreams": {"monolith": {"endpoints": [f"127.0.0.1:{backend}"]},
                                "service": {"endpoints": [f"127.0.0.1:{backend}"]}},
                  "default_upstream": "monolith",
                  "routes": [{"name": "drivers", "match": {"path": "/api/drivers/**"},
                              "target": "service", "stage": "monolith"}]}
        with open(os.path.join(work, "config.json"), "w") as f:
            json.dump(config, f)
        subprocess.run([CLI, "--config", url, "config", "push", os.path.join(work, "config.json")],
                       check=True, stdout=subprocess.DEVNULL)
        for _ in range(REPLICAS):
            processes.append(subprocess.Popen(
                [PROXY, "--config", url, "--listen", f"127.0.0.1:{free_port()}",
                 "--admin-listen", f"127.0.0.1:{free_port()}", "--workers", "1"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        port = members[0]["client"]

        def registered():
            answer = post(port, "/v3/kv/range", {"key": b64(PREFIX + "/replicas/"),
                                                  "range_end": b64(PREFIX + "/replicas0")})
            return [json.loads(base64.b64decode(kv["value"])) for kv in answer.get("kvs", [])]

        deadline = time.time() + 30
        while len(registered()) < REPLICAS:
            if time.time() > deadline:
                sys.exit(f"etcd_replicas_bench: only {len(registered())} replicas registered")
            time.sleep(0.1)
        time.sleep(1)

        anchor = Watch(members[1]["client"], PREFIX + "/config")
        reports = Watch(members[2]["client"], PREFIX + "/replicas/", prefix=True)
        for watch in (anchor, reports):
            watch.start()
            watch.ready.wait(10)
        document = config
        reach, bare = [], []
        for edit in range(EDITS):
            current = post(port, "/v3/kv/range", {"key": b64(PREFIX + "/config")})["kvs"][0]
            document["routes"][0]["stage"] = "shadow" if edit % 2 == 0 else "monolith"
            started = time.monotonic()
            answer = post(port, "/v3/kv/txn", {
                "compare": [{"key": b64(PREFIX + "/config"), "target": "MOD", "result": "EQUAL",
                             "mod_revision": current["mod_revision"]}],
                "success": [{"request_put": {"key": b64(PREFIX + "/config"),
                                             "value": b64(json.dumps(document))}}]})
            revision = int(answer["header"]["revision"])
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                seen = {}
                for at, key, value, _ in list(reports.events):
                    if at >= started and json.loads(value).get("config_revision") == revision:
                        seen.setdefault(key, at)
                if len(seen) >= REPLICAS:
                    reach.append((max(seen.values()) - started) * 1000)
                    break
                time.sleep(0.001)
            else:
                sys.exit(f"etcd_replicas_bench: edit {edit} did not reach every replica in 10 s")
            arrived = [at for at, _, _, mod in anchor.events if mod == revision]
            bare.append((arrived[0] - started) * 1000 if arrived else float("nan"))
            time.sleep(0.05)

        metrics = [m["metrics"] for m in members]
        time.sleep(2)
        before = grpc_calls(metrics)
        time.sleep(IDLE)
        after = grpc_calls(metrics)
        rate = {k: (after.get(k, 0) - before.get(k, 0)) / IDLE for k in after}

        p50 = statistics.median(reach)
        anchor_p50 = statistics.median(bare)
        print(f"etcd replicas: {REPLICAS} replicas, 3-member etcd, {EDITS} edits, "
              f"{os.cpu_count()} cores")
        print(f"edit -> every replica serving it: p50 {p50:.1f} ms, max {max(reach):.1f} ms | "
              f"anchor (a bare watch sees it): p50 {anchor_p50:.1f} ms, max {max(bare):.1f} ms | "
              f"ratio p50 {p50 / anchor_p50:.1f}x")
        polling = sum(rate.get(k, 0) for k in ("Range", "Txn", "Put", "DeleteRange", "LeaseGrant",
                                               "MemberList"))
        print(f"idle {IDLE:.0f} s: reads and writes {polling:.2f}/s (goal 0) | watches opened "
              f"{rate.get('Watch', 0):.2f}/s (a stream etcd ended, resumed) | lease keep-alives "
              f"{rate.get('LeaseKeepAlive', 0):.2f}/s "
              f"({rate.get('LeaseKeepAlive', 0) / REPLICAS:.2f} per replica) | every method: " +
              (", ".join(f"{k} {v:.2f}/s" for k, v in sorted(rate.items()) if v) or "none"))
    finally:
        for process in reversed(processes):
            process.kill()
        for process in processes:
            process.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
