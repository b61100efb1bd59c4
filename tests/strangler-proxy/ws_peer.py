#!/usr/bin/env python3
"""WebSocket peers for the proxy's tunnel tests (the `websockets` library: a real implementation
of RFC 6455 on both ends, the proxy in between).

  ws_peer.py server NAME [--tls CERT KEY] [--refuse STATUS]
      Echo server on 127.0.0.1 (a free port, printed as "listening on 127.0.0.1:PORT"). A text
      message comes back as "NAME:<message>", a binary one as it was. Each connection prints
      "connection PATH". --refuse answers every handshake with STATUS instead.
  ws_peer.py stall [--early BYTES] [--close]
      Answers any request 101, sends BYTES bytes (byte i is i % 251) at once after the head,
      and then never reads (a peer that speaks first, and cannot keep up) or, with --close,
      closes the connection.
  ws_peer.py client URL [--clients N] [--messages M] [--size BYTES] [--abort K] [--idle S]
                        [--cafile F]
      N concurrent connections, each sending M numbered text messages (and one binary message of
      BYTES, when given) and checking every echo, in order. The first K connections drop their
      TCP connection abruptly half way. --idle S: one connection, one message, S seconds of
      silence, then a second message (reports whether the proxy closed it meanwhile). Prints
      one JSON line: {"ok": n, "sides": {NAME: n}, "errors": [...], "aborted": k}.
"""
import argparse
import asyncio
import collections
import http
import json
import os
import socket
import ssl
import sys
import time

import websockets


async def serve(args):
    async def handler(ws, path=None):
        print("connection", ws.path, flush=True)
        try:
            async for message in ws:
                if isinstance(message, str):
                    await ws.send(f"{args.name}:{message}")
                else:
                    await ws.send(message)
        except websockets.ConnectionClosed:
            pass

    async def refuse(path, headers):
        if args.refuse:
            return http.HTTPStatus(args.refuse), [("Content-Type", "text/plain")], b"refused\n"
        return None

    context = None
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls[0], args.tls[1])
    async with websockets.serve(handler, "127.0.0.1", 0, ssl=context, max_size=None,
                                process_request=refuse) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on 127.0.0.1:{port}", flush=True)
        await asyncio.Future()


def stall(args):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    held = []
    while True:
        conn, _ = listener.accept()
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
        early = bytes(i % 251 for i in range(args.early))
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\n\r\n" + early)
        if args.close:
            conn.close()
        else:
            held.append(conn)  # never read again


async def one_client(args, index, context, result):
    abort = index < args.abort
    try:
        async with websockets.connect(args.url, ssl=context, max_size=None,
                                      open_timeout=10, close_timeout=5) as ws:
            side = None
            for i in range(args.messages):
                if abort and i == args.messages // 2:
                    ws.transport.abort()  # a peer that vanishes mid-conversation
                    result["aborted"] += 1
                    return
                sent = f"c{index}-m{i}"
                await ws.send(sent)
                got = await asyncio.wait_for(ws.recv(), 10)
                name, _, echoed = got.partition(":")
                if echoed != sent or (side is not None and name != side):
                    result["errors"].append(f"client {index}: sent {sent!r}, got {got!r}")
                    return
                side = name
            if args.size:
                payload = os.urandom(args.size)
                await ws.send(payload)
                got = await asyncio.wait_for(ws.recv(), 30)
                if got != payload:
                    result["errors"].append(f"client {index}: the {args.size}-byte message "
                                            f"came back changed ({len(got)} bytes)")
                    return
            result["ok"] += 1
            result["sides"][side or "-"] += 1
    except Exception as error:  # noqa: BLE001 - every failure is reported, none raised
        result["errors"].append(f"client {index}: {type(error).__name__}: {error}")


async def idle_client(args, context, result):
    async with websockets.connect(args.url, ssl=context, open_timeout=10) as ws:
        await ws.send("first")
        result["first"] = await asyncio.wait_for(ws.recv(), 10)
        started = time.monotonic()
        try:
            await asyncio.wait_for(ws.recv(), args.idle)
            result["errors"].append("a message came while idle")
        except asyncio.TimeoutError:
            result["closed"] = False
        except websockets.ConnectionClosed:
            result["closed"] = True
            result["closed_after_s"] = round(time.monotonic() - started, 3)


async def clients(args):
    context = None
    if args.url.startswith("wss:"):
        context = ssl.create_default_context(cafile=args.cafile)
    result = {"ok": 0, "sides": collections.Counter(), "errors": [], "aborted": 0}
    if args.idle:
        await idle_client(args, context, result)
    else:
        await asyncio.gather(*(one_client(args, i, context, result)
                               for i in range(args.clients)))
    print(json.dumps(result), flush=True)


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    server = sub.add_parser("server")
    server.add_argument("name")
    server.add_argument("--tls", nargs=2)
    server.add_argument("--refuse", type=int, default=0)
    stalled = sub.add_parser("stall")
    stalled.add_argument("--early", type=int, default=0)
    stalled.add_argument("--close", action="store_true")
    client = sub.add_parser("client")
    client.add_argument("url")
    client.add_argument("--clients", type=int, default=1)
    client.add_argument("--messages", type=int, default=10)
    client.add_argument("--size", type=int, default=0)
    client.add_argument("--abort", type=int, default=0)
    client.add_argument("--idle", type=float, default=0)
    client.add_argument("--cafile")
    args = parser.parse_args()
    if args.mode == "server":
        asyncio.run(serve(args))
    elif args.mode == "stall":
        stall(args)
    else:
        asyncio.run(clients(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
