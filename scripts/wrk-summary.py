"""wrk's --latency output on stdin, as one line for the load scripts:

    requests_per_sec p50_ms p99_ms errors requests

errors: wrk's non-2xx/3xx answers plus its socket errors (connect, read, write, timeout). Output
that cannot be read prints "0 - - ? 0" (a failed run) and says why on stderr.
"""
import re
import sys

out = sys.stdin.read()


def ms(label):
    m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[unit]


try:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50, p99 = ms("50"), ms("99")
    requests = int(re.search(r"^\s*(\d+) requests in ", out, re.M).group(1))
except (AttributeError, ValueError):
    print("wrk's output could not be read: " + " ".join(out.split())[:300], file=sys.stderr)
    print("0 - - ? 0")
    sys.exit(0)
non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
print(f"{rps:.0f} {p50:.2f} {p99:.2f} {errors} {requests}")
