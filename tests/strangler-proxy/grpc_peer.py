#!/usr/bin/env python3
"""gRPC peers for the proxy's HTTP/2 upstream tests (Python's grpcio: a real gRPC implementation on
both ends, the proxy in between). No .proto: the service is registered with generic handlers and
its messages are raw bytes, so nothing is generated at build time.

Service "strangler.test.Echo":
  Echo   (unary)          b"x" -> b"NAME:x"; b"fail:TEXT" aborts INVALID_ARGUMENT "refused TEXT"
  Count  (server stream)  b"N" -> b"NAME:0" .. b"NAME:N-1"
  Sum    (client stream)  messages -> b"NAME:COUNT:BYTES"
  Chat   (bidi)           each message -> b"NAME:message", as it arrives
  Slow   (unary)          waits 0.3 s, then b"NAME:slow"; prints "cancelled Slow" when the
                          client (or a proxy) cancelled the call meanwhile
Every call ends with the trailing metadata "x-served-by: NAME".

  grpc_peer.py server NAME [--tls CERT KEY]
      Serves on 127.0.0.1 (a free port, printed as "listening on 127.0.0.1:PORT"); prints
      "call METHOD" for each call.
  grpc_peer.py client TARGET [--calls N] [--concurrency C] [--cafile F --name HOST]
      N unary calls from C threads (each payload numbered, its echo checked), one of 1 MB, a
      server stream of 200, a client stream of 100, a bidi chat of 50 (each answer read before the
      next message goes: the two directions interleave), and a failing call. Prints one JSON line:
      {"ok": n, "sides": {NAME: n}, "errors": [...], "stream": [...], "failure": {...}}.
      --cancelled K first: K Slow calls with a 50 ms deadline, all at once ("cancelled": how many
      ended DEADLINE_EXCEEDED).
"""
import argparse
import concurrent.futures
import json
import os
import sys
import threading
import time

import grpc

SERVICE = "strangler.test.Echo"


def identity(data):
    return data


def say(line):
    # One write per line: print() from the server's threads can interleave its text and newline.
    os.write(1, (line + "\n").encode())


def serve(args):
    name = args.name.encode()

    def finish(context):
        context.set_trailing_metadata((("x-served-by", args.name),))

    def echo(request, context):
        say("call Echo")
        finish(context)
        if request.startswith(b"fail:"):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "refused " + request[5:].decode())
        return name + b":" + request

    def count(request, context):
        say("call Count")
        finish(context)
        for i in range(int(request)):
            yield name + b":" + str(i).encode()

    def total(requests, context):
        say("call Sum")
        finish(context)
        n = size = 0
        for message in requests:
            n += 1
            size += len(message)
        return name + b":" + str(n).encode() + b":" + str(size).encode()

    def chat(requests, context):
        say("call Chat")
        finish(context)
        for message in requests:
            yield name + b":" + message

    def slow(request, context):
        say("call Slow")
        finish(context)
        time.sleep(0.3)
        if not context.is_active():
            say("cancelled Slow")
        return name + b":slow"

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Slow": grpc.unary_unary_rpc_method_handler(slow, identity, identity),
        "Echo": grpc.unary_unary_rpc_method_handler(echo, identity, identity),
        "Count": grpc.unary_stream_rpc_method_handler(count, identity, identity),
        "Sum": grpc.stream_unary_rpc_method_handler(total, identity, identity),
        "Chat": grpc.stream_stream_rpc_method_handler(chat, identity, identity),
    })
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=32),
                         options=[("grpc.max_receive_message_length", 8 << 20),
                                  ("grpc.max_send_message_length", 8 << 20)])
    server.add_generic_rpc_handlers((handler,))
    if args.tls:
        with open(args.tls[0], "rb") as cert, open(args.tls[1], "rb") as key:
            credentials = grpc.ssl_server_credentials(((key.read(), cert.read()),))
        port = server.add_secure_port("127.0.0.1:0", credentials)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    server.wait_for_termination()


def side_of(answer):
    return answer.split(b":", 1)[0].decode()


def client(args):
    options = [("grpc.max_receive_message_length", 8 << 20),
               ("grpc.max_send_message_length", 8 << 20)]
    if args.cafile:
        with open(args.cafile, "rb") as ca:
            credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
        options.append(("grpc.ssl_target_name_override", args.name))
        channel = grpc.secure_channel(args.target, credentials, options=options)
    else:
        channel = grpc.insecure_channel(args.target, options=options)
    echo = channel.unary_unary(f"/{SERVICE}/Echo", identity, identity)
    count = channel.unary_stream(f"/{SERVICE}/Count", identity, identity)
    total = channel.stream_unary(f"/{SERVICE}/Sum", identity, identity)
    chat = channel.stream_stream(f"/{SERVICE}/Chat", identity, identity)
    report = {"ok": 0, "sides": {}, "errors": []}
    lock = threading.Lock()

    if args.cancelled:
        slow = channel.unary_unary(f"/{SERVICE}/Slow", identity, identity)

        def cancelled(_):
            try:
                slow(b"x", timeout=0.05)
                return "answered"
            except grpc.RpcError as error:
                return error.code().name

        with concurrent.futures.ThreadPoolExecutor(max_workers=args.cancelled) as pool:
            codes = list(pool.map(cancelled, range(args.cancelled)))
        report["cancelled"] = codes.count("DEADLINE_EXCEEDED")

    def record(side=None, error=None):
        with lock:
            if error is not None:
                if len(report["errors"]) < 20:
                    report["errors"].append(error)
                return
            report["ok"] += 1
            report["sides"][side] = report["sides"].get(side, 0) + 1

    def one(i):
        payload = f"call-{i}-".encode() + b"x" * (i % 300)
        try:
            answer, call = echo.with_call(payload, timeout=30)
        except grpc.RpcError as error:
            record(error=f"call {i}: {error.code()} {error.details()}")
            return
        side = side_of(answer)
        if answer != side.encode() + b":" + payload:
            record(error=f"call {i}: wrong answer {answer[:60]!r}")
            return
        if dict(call.trailing_metadata()).get("x-served-by") != side:
            record(error=f"call {i}: trailer {call.trailing_metadata()!r}")
            return
        record(side)

    with concurrent.futures.ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        list(pool.map(one, range(args.calls)))

    try:
        big = bytes(i % 251 for i in range(1 << 20))
        answer = echo(big, timeout=30)
        report["big"] = answer[answer.index(b":") + 1:] == big
    except grpc.RpcError as error:
        report["big"] = f"{error.code()} {error.details()}"

    try:
        answers = list(count(b"200", timeout=30))
        side = side_of(answers[0]) if answers else ""
        report["stream"] = len(answers) if answers == [
            f"{side}:{i}".encode() for i in range(200)] else [a[:40].decode() for a in answers[:5]]
    except grpc.RpcError as error:
        report["stream"] = f"{error.code()} {error.details()}"

    try:
        answer = total(iter([b"m" * i for i in range(100)]), timeout=30)
        report["sum"] = answer.split(b":", 1)[1].decode()
    except grpc.RpcError as error:
        report["sum"] = f"{error.code()} {error.details()}"

    # Bidi, strictly interleaved: the next message goes only once the last answer came back, so
    # a proxy that held either direction until the other ended would stall it (timeout).
    try:
        outbox = []
        ready = threading.Event()

        def messages():
            for i in range(50):
                yield f"m{i}".encode()
                if not ready.wait(10):
                    return
                ready.clear()

        answers = 0
        for answer in chat(messages(), timeout=30):
            if answer.split(b":", 1)[1] != f"m{answers}".encode():
                outbox.append(answer[:40].decode())
            answers += 1
            ready.set()
        report["chat"] = answers if not outbox else outbox
    except grpc.RpcError as error:
        report["chat"] = f"{error.code()} {error.details()}"

    try:
        echo(b"fail:on purpose", timeout=30)
        report["failure"] = {"code": "OK"}
    except grpc.RpcError as error:
        report["failure"] = {"code": error.code().name, "details": error.details(),
                             "served_by": dict(error.trailing_metadata() or ()).get("x-served-by")}
    print(json.dumps(report), flush=True)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("name")
    s.add_argument("--tls", nargs=2)
    c = sub.add_parser("client")
    c.add_argument("target")
    c.add_argument("--calls", type=int, default=100)
    c.add_argument("--concurrency", type=int, default=16)
    c.add_argument("--cafile")
    c.add_argument("--name", default="localhost")
    c.add_argument("--cancelled", type=int, default=0)
    args = parser.parse_args()
    if args.mode == "server":
        serve(args)
    else:
        client(args)


if __name__ == "__main__":
    sys.exit(main())
