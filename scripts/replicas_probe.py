"""A client of the replicas behind the load balancer, for scripts/replicas-faults.sh.

Standard library only. Until SIGTERM, several times a second: GET /api/whoami and POST /api/tasks
with an external_id of its own (probe-<run>-<n>). A call with no answer, or a 502/503/504, is
repeated once a second later (as a caller job is), with the same external_id for a POST; a 409 duplicate_external_id on that repeat
means the first attempt landed. Each call is one JSON line on stdout:

  {"t": 1765000000.123, "op": "create", "first": 502, "final": 201, "attempts": 2,
   "external_id": "probe-…-7", "retry_after": null, "ok": true}

`first`/`final` are statuses, or "no_answer". The token (writer-job's, Tasks.ReadWrite.All) is
read once from --token-file.

With --burst SECS, instead: N threads (--threads) call GET /api/whoami back to back on kept-alive
connections for SECS seconds, with no repeat of their own, and one JSON line sums them up:
{"calls": 12345, "non_200": 0, "no_answer": 0}. The fault script kills a replica in the middle
of one, so that requests are in flight on it.
"""

import argparse
import http.client
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
lock = threading.Lock()


def call(url, token, method="GET", body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", "Bearer " + token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()
            return answer.status, None, None
    except urllib.error.HTTPError as answer:
        text = answer.read()
        reason = None
        try:
            reason = json.loads(text).get("reason")
        except (ValueError, AttributeError):
            pass
        return answer.code, answer.headers.get("Retry-After"), reason
    except (OSError, urllib.error.URLError):
        return "no_answer", None, None


def emit(record):
    with lock:
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()


def worker(op, base, token, every, run_id):
    n = 0
    while not stop.is_set():
        n += 1
        started = time.time()
        if op == "whoami":
            args = (base + "/api/whoami", token)
            external_id = None
        else:
            external_id = f"probe-{run_id}-{n}"
            args = (base + "/api/tasks", token, "POST",
                    {"title": "written by the fault script's probe", "external_id": external_id})
        first, retry_after, reason = call(*args)
        final, attempts = first, 1
        if first in ("no_answer", 502, 503, 504):
            time.sleep(1.0)
            final, retry_after2, reason = call(*args)
            retry_after = retry_after or retry_after2
            attempts = 2
        landed = final == 409 and reason == "duplicate_external_id" and attempts == 2
        ok = final == 200 if op == "whoami" else (final == 201 or landed)
        emit({"t": round(started, 3), "op": op, "first": first, "final": final,
              "attempts": attempts, "external_id": external_id,
              "retry_after": retry_after, "reason": reason, "ok": ok})
        stop.wait(max(0.0, every - (time.time() - started)))


def burst(url, token, seconds, threads):
    target = urllib.parse.urlsplit(url)
    totals = {"calls": 0, "non_200": 0, "no_answer": 0}
    deadline = time.time() + seconds

    def run():
        counts = {"calls": 0, "non_200": 0, "no_answer": 0}
        connection = None
        while time.time() < deadline:
            if connection is None:
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
            counts["calls"] += 1
            try:
                connection.request("GET", "/api/whoami", headers={"Authorization": "Bearer " + token})
                answer = connection.getresponse()
                answer.read()
                if answer.status != 200:
                    counts["non_200"] += 1
            except (OSError, http.client.HTTPException):
                counts["no_answer"] += 1
                connection.close()
                connection = None
        with lock:
            for key, value in counts.items():
                totals[key] += value

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker_thread in workers:
        worker_thread.start()
    for worker_thread in workers:
        worker_thread.join()
    emit(totals)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--every", type=float, default=0.2)
    parser.add_argument("--burst", type=float)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    with open(args.token_file) as f:
        token = f.read().strip()
    if args.burst:
        burst(args.url, token, args.burst, args.threads)
        return
    run_id = str(int(time.time()))
    threads = [threading.Thread(target=worker, args=(op, args.url.rstrip("/"), token, args.every, run_id))
               for op in ("whoami", "create")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


if __name__ == "__main__":
    main()
