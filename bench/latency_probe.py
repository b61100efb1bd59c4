#!/usr/bin/env python3
"""Sequential single-connection latency probe with a monotonic clock: sends N keep-alive GETs
one after another and prints p50/p99/p99.9/max in microseconds as JSON. Complements wrk's
-c1 figures (the client's own overhead is included, equally for every target).

usage: latency_probe.py PORT PATH N
"""
import json
import socket
import sys
import time

port, path, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
request = f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


def connect():
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


sock, buffered, samples = connect(), b"", []
for _ in range(count):
    start = time.perf_counter()
    sock.sendall(request)
    while True:
        end = buffered.find(b"\r\n\r\n")
        if end >= 0:
            length = 0
            for line in buffered[:end].decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(buffered) >= end + 4 + length:
                buffered = buffered[end + 4 + length:]
                break
        data = sock.recv(65536)
        if not data:  # the server ended the connection: reconnect and resend
            sock, buffered = connect(), b""
            sock.sendall(request)
            continue
        buffered += data
    samples.append((time.perf_counter() - start) * 1e6)
samples.sort()
pick = lambda q: samples[min(len(samples) - 1, int(len(samples) * q))]
print(json.dumps({"p50": pick(0.5), "p99": pick(0.99), "p999": pick(0.999), "max": samples[-1]}))
