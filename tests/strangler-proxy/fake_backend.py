#!/usr/bin/env python3
"""A tiny HTTP/1.1 keep-alive backend for the proxy's integration tests, run as a real process
so that tests can kill it. Answers every request with JSON naming itself, with the URI, the
client's port (one per connection, so a test can see connections reused), X-Forwarded-Proto,
how many requests it has served and, over TLS, the SNI name the client sent.

usage: fake_backend.py NAME [PORT] [--tls CERT KEY]
  PORT 0 or absent: any free port (printed on stdout); --tls: HTTPS only, with that certificate.
"""
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
TLS = None
if "--tls" in args:
    at = args.index("--tls")
    TLS = args[at + 1:at + 3]
    del args[at:at + 3]
NAME = args[0]
PORT = int(args[1]) if len(args) > 1 else 0
SNI = {}
SERVED = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body leave in one write (http.server flushes after each answer): a test that
    # SIGKILLs this backend kills it between answers or before one, never half way through an
    # answer whose head a proxy has already passed on (which no proxy could hide: the client
    # has the head). Unbuffered, the head and the body were two writes.
    wbufsize = 1 << 16

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        SERVED[0] += 1
        data = json.dumps({"upstream": NAME, "method": self.command, "uri": self.path,
                           "body": body.decode("utf-8", "replace"),
                           "port": self.client_address[1], "served": SERVED[0],
                           "proto": self.headers.get("X-Forwarded-Proto", ""),
                           "sni": SNI.get(id(self.connection)) or ""}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = answer

    def log_message(self, *args):
        pass


def remember_sni(connection, name, _context):
    SNI[id(connection)] = name


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
if TLS:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*TLS)
    context.sni_callback = remember_sni
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(f"fake-backend {NAME} listening on 127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
