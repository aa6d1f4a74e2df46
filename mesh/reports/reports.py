"""The reports service: a service that is not Rust and holds no token code.

Python's standard library only. It sits behind entra-gateway, which checks every caller's Entra
app token against the route policies and passes the caller's identity on in headers
(X-Entra-Client-Id, X-Entra-Tenant-Id, X-Entra-Roles, ...); the gateway removes any such header a
client sends, so behind it they can be trusted. Nothing here parses or checks a token: the service
must be reachable only through the gateway (in compose it publishes no port; in the local mesh it
listens on loopback).

  GET /reports/daily    today's report, naming the app that asked for it
  GET /reports/<other>  404, problem+json
  GET /healthz          200

    python3 reports.py [--host 127.0.0.1] [--port 0] [--exit-with-stdin]

Prints `listening on <host>:<port>` once bound (port 0: any free port), then one line per request
on stdout: method, path, status and the calling app as the gateway named it.
"""
import argparse
import datetime
import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IDENTITY = {
    "client_id": "X-Entra-Client-Id",
    "tenant_id": "X-Entra-Tenant-Id",
    "object_id": "X-Entra-Object-Id",
    "token_version": "X-Entra-Token-Version",
    "token_id": "X-Entra-Token-Id",
}

served = 0
served_lock = threading.Lock()


def say(line):
    print(line, flush=True)


class Reports(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "reports"
    sys_version = ""

    def log_message(self, *args):
        # One line per request is printed by _send; the default access log would repeat it.
        pass

    def _send(self, status, body, content_type="application/json"):
        out = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
        caller = self.headers.get("X-Entra-Client-Id")
        roles = self.headers.get("X-Entra-Roles") or "-"
        who = f" for app {caller} (roles: {roles})" if caller else ""
        say(f"{self.command} {self.path} → {status}{who}")

    def _discard_body(self):
        """Reads the request body off the connection (a GET may carry one): left unread, its bytes
        would be taken for the next request on this keep-alive connection, headers and all."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._send(400, {"title": "Bad Request", "status": 400,
                             "detail": "chunked request bodies are not accepted"},
                       "application/problem+json")
            return False
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(400, {"title": "Bad Request", "status": 400,
                             "detail": "Content-Length is not a number"},
                       "application/problem+json")
            return False
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                self.close_connection = True
                return False
            length -= len(chunk)
        return True

    def do_GET(self):
        global served
        if not self._discard_body():
            return
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, {"status": "ok"})
            return
        if path == "/reports/daily":
            with served_lock:
                served += 1
                number = served
            caller = {key: self.headers.get(name) for key, name in IDENTITY.items()}
            caller["roles"] = (self.headers.get("X-Entra-Roles") or "").split()
            today = datetime.datetime.now(datetime.timezone.utc)
            self._send(
                200,
                {
                    "report": "daily",
                    "date": today.date().isoformat(),
                    "number": number,
                    "requested_by": caller,
                },
            )
            return
        self._send(
            404,
            {
                "type": "about:blank",
                "title": "Not Found",
                "status": 404,
                "detail": f"no report at {path}",
            },
            "application/problem+json",
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--exit-with-stdin", action="store_true",
                        help="stop when stdin closes (the process that started this one is gone)")
    args = parser.parse_args()
    try:
        server = ThreadingHTTPServer((args.host, args.port), Reports)
    except OSError as error:
        print(f"reports: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 1
    server.daemon_threads = True
    # SIGTERM (docker stop, the mesh stopping) ends serve_forever like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    host, port = server.server_address[:2]
    say(f"listening on {host}:{port}")
    if args.exit_with_stdin:
        # The parent holds our stdin: when it goes, however it went, so do we.
        def watch():
            sys.stdin.read()
            server.shutdown()
        threading.Thread(target=watch, daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
