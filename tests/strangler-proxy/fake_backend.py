#!/usr/bin/env python3
"""A tiny HTTP/1.1 keep-alive backend for the proxy's integration tests, run as a real process
so that tests can kill it. Answers every request with JSON naming itself.

usage: fake_backend.py NAME [PORT]   (PORT 0 or absent: any free port; printed on stdout)
"""
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME = sys.argv[1]
PORT = int(sys.argv[2]) if len(sys.argv) > 2 else 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        data = json.dumps({"upstream": NAME, "method": self.command, "uri": self.path,
                           "body": body.decode("utf-8", "replace")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print(f"fake-backend {NAME} listening on 127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
