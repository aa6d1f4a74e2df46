"""The inventory app: a Python app that calls Entra-protected services and holds no token code.

Python's standard library only. Its Entra identity lives in the caller's token sidecar next to it
(the mesh's reader): it calls the tasks API and the reports service through the sidecar's egress
listener, which adds the token, and it gets a token the way an Azure SDK's
ManagedIdentityCredential would, from IDENTITY_ENDPOINT with the IDENTITY_HEADER secret, to call
the API directly. It never sees a client secret, and prints no token.

    IDENTITY_ENDPOINT=http://127.0.0.1:9091/msi/token IDENTITY_HEADER=... \\
      python3 inventory.py --sidecar http://127.0.0.1:9091 --api http://127.0.0.1:8080 \\
        [--reports] [--every 10] [--exit-with-stdin]

One line per call on stdout: what it asked, the status, and what came back.
"""
import argparse
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request


def say(line):
    print(line, flush=True)


def get(url, headers=None):
    """(status, parsed JSON body or None); a refused connection is status 0."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"null")
        except ValueError:
            return error.code, None
    except (urllib.error.URLError, OSError, ValueError) as error:
        return 0, str(error)


def reason(body):
    return body.get("reason") or body.get("message") if isinstance(body, dict) else None


def round_of_calls(args):
    status, body = get(f"{args.sidecar}/tasks/api/tasks?limit=5")
    if status == 200:
        count = len(body["items"])
        detail = f"{count} task{'' if count == 1 else 's'}"
    else:
        detail = reason(body)
    say(f"GET /api/tasks?limit=5 via the sidecar → {status} ({detail})")

    if args.reports:
        status, body = get(f"{args.sidecar}/reports/reports/daily")
        detail = f"report for {body.get('date')}" if status == 200 else reason(body)
        say(f"GET /reports/daily via the sidecar → {status} ({detail})")

    endpoint, secret = os.environ.get("IDENTITY_ENDPOINT"), os.environ.get("IDENTITY_HEADER")
    if not (endpoint and secret):
        return
    query = urllib.parse.urlencode({"resource": "api://tasks-api", "api-version": "2019-08-01"})
    status, body = get(f"{endpoint}?{query}", {"X-IDENTITY-HEADER": secret})
    if status != 200:
        say(f"managed-identity endpoint → {status} ({reason(body)})")
        return
    minutes = (int(body["expires_on"]) - time.time()) / 60
    token = body["access_token"]
    status, body = get(f"{args.api}/api/whoami", {"Authorization": f"Bearer {token}"})
    who = f"as app {body['client_app_id']}" if status == 200 else reason(body)
    say(
        f"token from IDENTITY_ENDPOINT (expires in {minutes:.0f} min), "
        f"GET /api/whoami with it → {status} ({who})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sidecar", required=True)
    parser.add_argument("--api", required=True)
    parser.add_argument("--reports", action="store_true")
    parser.add_argument("--every", type=float, default=10.0)
    parser.add_argument("--exit-with-stdin", action="store_true",
                        help="exit when stdin closes (the process that started us is gone)")
    args = parser.parse_args()
    stop = threading.Event()
    if args.exit_with_stdin:
        def watch():
            sys.stdin.read()
            stop.set()
        threading.Thread(target=watch, daemon=True).start()
    while not stop.is_set():
        round_of_calls(args)
        stop.wait(args.every)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
