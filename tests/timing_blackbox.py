#!/usr/bin/env python3
"""Server-Timing (ch_mw_timing) over a real socket, on examples/bench.c's
/users/:id: the header's form, and, on a build whose app reads the clock
anyway (-DBENCH_BATTERIES: metrics), that the after-hooks' end read shared
with Server-Timing never leaks into another answer: FastRoutes, routed
answers and /metrics interleaved on one connection keep every request
counted with a duration >= 0.
  python3 tests/timing_blackbox.py BINARY [--metrics]"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httptest  # noqa: E402 (found beside this file)
from httptest import result  # noqa: E402


def get(s, buf, path, extra=""):
    """GET path on s; returns (head text, body, the bytes read past it)."""
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, extra)).encode())
    r, rest = httptest.read_response(s, buf)
    return r.head, r.body, rest


def metric(body, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), body, re.M)
    return float(m.group(1)) if m else None


def main():
    binary = sys.argv[1]
    with_metrics = "--metrics" in sys.argv
    try:
        srv = httptest.Server([binary], {"CHOPIN_WORKERS": "1"})
    except RuntimeError:
        result("the server starts", False)
        return
    try:
        s = srv.connect()
        buf = b""
        form = re.compile(r"\r\nServer-Timing: app;dur=(\d+)\.(\d{3})(\r\n|$)")
        bad = []
        for i in range(5):
            head, body, buf = get(s, buf, "/users/%d" % i)
            m = form.search(head)
            if not head.startswith("HTTP/1.1 200") or not m or float(m.group(1) + "." + m.group(2)) > 5000:
                bad.append(head)
        result("Server-Timing: app;dur=<ms>.<3 digits> on each routed answer", not bad, repr(bad[:1]))
        head, body, buf = get(s, buf, "/plaintext")
        result("no Server-Timing on a FastRoute (no middleware)", "Server-Timing" not in head, head)
        if with_metrics:
            origin = "Origin: https://a.example\r\n"
            head, body, buf = get(s, buf, "/metrics")
            before = metric(body.decode(), "chopin_request_duration_seconds_count")
            for i in range(20):  # routed (Server-Timing's end read), FastRoute and 404 in turn
                get(s, buf, "/users/%d" % i, origin)
                head, body, buf = get(s, buf, "/plaintext")
                head, body, buf = get(s, buf, "/nowhere/%d" % i)
            head, body, buf = get(s, buf, "/metrics")
            text = body.decode()
            after = metric(text, "chopin_request_duration_seconds_count")
            total = metric(text, "chopin_request_duration_seconds_sum")
            first = metric(text, 'chopin_request_duration_seconds_bucket{le="0.001"}')
            result("every interleaved answer counted once in the duration histogram",
                   before is not None and after == before + 61, "%r -> %r" % (before, after))
            result("durations are >= 0 and short (sum < 1 s; most in the first bucket)",
                   total is not None and 0 <= total < 1 and first is not None and first >= after / 2,
                   "sum %r, first bucket %r of %r" % (total, first, after))
        s.close()
    except Exception as e:  # a failure of the test itself is a failure
        result("the test ran to its end", False, repr(e))
    finally:
        srv.stop(timeout=5)


main()
sys.exit(httptest.summary())
