#!/usr/bin/env python3
"""Server-Timing (ch_mw_timing) over a real socket, on examples/bench.c's
/users/:id: the header's form, and, on a build whose app reads the clock
anyway (-DBENCH_BATTERIES: metrics), that the after-hooks' end read shared
with Server-Timing never leaks into another answer: FastRoutes, routed
answers and /metrics interleaved on one connection keep every request
counted with a duration >= 0.
  python3 tests/timing_blackbox.py BINARY [--metrics]"""
import os, re, socket, subprocess, sys, time

passed = failed = 0


def result(name, ok, why=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok - " + name)
    else:
        failed += 1
        print("not ok - %s%s" % (name, (": " + why) if why else ""))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def read_response(s, buf):
    while b"\r\n\r\n" not in buf:
        c = s.recv(65536)
        if not c:
            raise EOFError("closed before a head")
        buf += c
    head, buf = buf.split(b"\r\n\r\n", 1)
    m = re.search(rb"\r\ncontent-length: *(\d+)", head, re.I)
    n = int(m.group(1)) if m else 0
    while len(buf) < n:
        c = s.recv(65536)
        if not c:
            raise EOFError("closed in a body")
        buf += c
    return head.decode("latin-1"), buf[:n], buf[n:]


def get(s, buf, path, extra=""):
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\n%s\r\n" % (path, extra)).encode())
    return read_response(s, buf)


def metric(body, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), body, re.M)
    return float(m.group(1)) if m else None


def main():
    binary = sys.argv[1]
    with_metrics = "--metrics" in sys.argv
    port = free_port()
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", CHOPIN_WORKERS="1")
    srv = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                time.sleep(0.05)
        else:
            result("the server starts", False)
            return
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
        srv.terminate()
        try:
            srv.wait(5)
        except subprocess.TimeoutExpired:
            srv.kill()


main()
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
