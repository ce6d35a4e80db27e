#!/usr/bin/python3
"""batteries_metrics.py - GET /metrics of examples/rest.c read by the real
Prometheus client's own text parser (Debian's python3-prometheus-client),
as a scraper would: every family typed, the histogram's buckets cumulative
and ending in +Inf equal to _count, the counts summed over all workers.
Usage: batteries_metrics.py build/rest. Last line: "N passed, N failed"."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httptest  # noqa: E402 (found beside this file)
from httptest import result  # noqa: E402

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    print("skip: python3-prometheus-client is not installed (apt-get install python3-prometheus-client)")
    print("0 passed, 0 failed")
    sys.exit(0)


def get(port, path, headers=""):
    """One request on its own connection (so the kernel spreads them over
    the workers); returns (status, content-type, body)."""
    s = httptest.connect(port)
    s.sendall(("GET %s HTTP/1.1\r\nHost: h\r\nConnection: close\r\n%s\r\n" % (path, headers)).encode())
    r, _ = httptest.read_response(s)
    s.close()
    return r.status, r.headers.get("content-type", ""), r.body.decode()


def main():
    if len(sys.argv) < 2:
        print("usage: batteries_metrics.py build/rest")
        return 2
    env = {"ACCESS_LOG": "off", "CHOPIN_WORKERS": "4", "CORS_ORIGINS": None, "RATE_LIMIT": None, "TRUST_PROXY": None}
    srv = httptest.Server([sys.argv[1]], env, start_timeout=5, own_stderr=False)
    port = srv.port
    try:
        n200, n401, n404 = 24, 5, 3
        for _ in range(n200):
            get(port, "/health")
        for _ in range(n401):
            get(port, "/api/v1/todos")
        for _ in range(n404):
            get(port, "/api/v1/todos/999", "Authorization: Bearer secret\r\n")
        status, ctype, text = get(port, "/metrics")
        result("GET /metrics: 200, text/plain; version=0.0.4",
               status == 200 and ctype == "text/plain; version=0.0.4", ctype)
        try:
            families = {f.name: f for f in text_string_to_metric_families(text)}
            parsed = True
        except Exception as e:  # the parser refuses the text
            families, parsed = {}, False
            print("# " + repr(e))
        result("the Prometheus client's parser reads it all", parsed)
        # the parser names a counter family without its _total suffix
        req = families.get("chopin_requests")
        by_code = {}
        if req:
            for s in req.samples:
                if s.name == "chopin_requests_total":
                    by_code[s.labels.get("code")] = s.value
        result("chopin_requests_total: a counter labelled by code, summed over the 4 workers",
               req is not None and req.type == "counter" and by_code.get("200") == n200 and
               by_code.get("401") == n401 and by_code.get("404") == n404, repr(by_code))
        conns = families.get("chopin_connections_open")
        result("chopin_connections_open: a gauge, at least this scrape's own connection",
               conns is not None and conns.type == "gauge" and conns.samples and conns.samples[0].value >= 1)
        hist = families.get("chopin_request_duration_seconds")
        ok = hist is not None and hist.type == "histogram"
        buckets, total, count, sum_ = [], None, None, None
        if ok:
            for s in hist.samples:
                if s.name.endswith("_bucket"):
                    buckets.append((float(s.labels["le"]), s.value))
                elif s.name.endswith("_count"):
                    count = s.value
                elif s.name.endswith("_sum"):
                    sum_ = s.value
            total = buckets[-1][1] if buckets else None
        cumulative = all(b[1] <= c[1] for b, c in zip(buckets, buckets[1:]))
        ordered = all(b[0] < c[0] for b, c in zip(buckets, buckets[1:]))
        result("chopin_request_duration_seconds: a histogram, buckets ordered and cumulative, +Inf last and equal to "
               "_count, _sum >= 0",
               ok and len(buckets) > 2 and buckets[-1][0] == float("inf") and ordered and cumulative and
               total == count == n200 + n401 + n404 and sum_ is not None and sum_ >= 0,
               repr((buckets[-1:] if buckets else None, count, sum_)))
        unhelped = [f.name for f in families.values() if not f.documentation]
        result("every family has HELP text", parsed and not unhelped, repr(unhelped))
    finally:
        srv.stop(timeout=10)
    return httptest.summary()


if __name__ == "__main__":
    sys.exit(main())
