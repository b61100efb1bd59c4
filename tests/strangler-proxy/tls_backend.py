#!/usr/bin/env python3
"""An HTTPS (TLS only) HTTP/1.1 keep-alive backend for the proxy's upstream TLS tests, run as a
real process. Answers every request with JSON: its name, the URI, the SNI name the client sent,
the client's port (one port per connection, so a test can see connections reused) and how many
requests it has served.

usage: tls_backend.py NAME CERT KEY   (any free port; printed on stdout)
"""
import json
import ssl
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

NAME, CERT, KEY = sys.argv[1:4]
SNI = {}
SERVED = [0]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        SERVED[0] += 1
        data = json.dumps({"upstream": NAME, "method": self.command, "uri": self.path,
                           "sni": SNI.get(id(self.connection), None) or "",
                           "port": self.client_address[1], "served": SERVED[0],
                           "proto": self.headers.get("X-Forwarded-Proto", ""),
                           "body": body.decode("utf-8", "replace")}).encode()
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


context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(CERT, KEY)
context.sni_callback = remember_sni
server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
server.socket = context.wrap_socket(server.socket, server_side=True)
print(f"tls-backend {NAME} listening on 127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
