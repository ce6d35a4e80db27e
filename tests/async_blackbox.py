#!/usr/bin/env python3
"""async_blackbox.py - black-box tests of answering later (issue 10) against
examples/async.c, over real sockets:

    python3 tests/async_blackbox.py build/async        (or build/async-asan)

Deferred responses beside fast ones on one worker, pipelining in order (also
with much input held behind a deferred one), clients that leave mid-defer,
mid-offload, mid-stream and mid-events, the off-loop pool, /stream framing and
bytes, HTTP/1.0 and HEAD on a stream, a slow reader's RSS, SSE framing byte by
byte (multi-line data, Last-Event-ID), publish/subscribe over two workers,
timers in order, SIGTERM with streams and deferred responses in flight, and a
clean exit (an ASan build reports leaks and errors at exit: the exit status
and stderr are checked). Every case prints "ok - name" or "FAIL - name: why";
the last line is "N passed, N failed". Nothing waits without a timeout.
"""
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httptest  # noqa: E402 (found beside this file)

BIN = sys.argv[1] if len(sys.argv) > 1 else "build/async"
SLOW = 3 if "asan" in BIN else 1  # sanitized builds are slower


class Server(httptest.Server):
    """examples/async.c on a free port, `workers` workers, the shutdown
    grace `grace` seconds (its default if None)."""

    def __init__(self, workers=1, grace=None):
        env = {"CHOPIN_WORKERS": str(workers), "SERVER_MODE": None}
        if grace is not None:
            env["SHUTDOWN_TIMEOUT"] = str(grace)
        httptest.Server.__init__(self, [BIN], env)

    def conn(self, timeout=5):
        return self.connect(timeout)

    def rss_kib(self):
        return self.proc_status("VmRSS")

    def stop(self):
        """SIGTERM; returns (exit status, stderr)."""
        return httptest.Server.stop(self, timeout=20 * SLOW)


def recv_until(s, marker, limit=5.0):
    """Bytes until marker arrives, the server closes, or limit seconds pass
    (more for a sanitized build)."""
    return httptest.recv_until(s, marker, limit * SLOW)


def recv_all(s, limit=5.0):
    """Bytes until the server closes or limit seconds pass."""
    return httptest.recv_until(s, None, limit * SLOW)


def read_response(s, buf=b"", head_only=False, limit=5.0):
    """One response from s (buf: bytes already read), within limit seconds
    (more for a sanitized build). Returns (Response, rest)."""
    return httptest.read_response(s, buf, head_only, limit * SLOW)


def get(srv, target, headers="", method="GET", version="1.1", limit=5.0):
    s = srv.conn()
    s.sendall(("%s %s HTTP/%s\r\nHost: x\r\n%s\r\n" % (method, target, version, headers)).encode())
    r, _ = read_response(s, head_only=(method == "HEAD"), limit=limit)
    s.close()
    return r


def case(name, fn, *args):
    """Runs one case: fn returns None when it holds, else why not (or
    raises, which fails the case with the reason)."""
    try:
        why = fn(*args)
    except Exception as e:  # a crash of the case is a failure with its reason
        why = "%s: %s" % (type(e).__name__, e)
    httptest.result(name, not why, why or "")
    sys.stdout.flush()


def expect(cond, why):
    if not cond:
        raise AssertionError(why)


# ---- the cases ----

def c_fast(srv):
    r = get(srv, "/fast")
    expect(r.status == 200 and r.body == b"fast" and r.headers["content-type"].startswith("text/plain"), repr(r.body))


def c_delay(srv):
    t = time.time()
    r = get(srv, "/delay?ms=120")
    took = time.time() - t
    expect(r.status == 200 and r.body == b"waited 120 ms", repr(r.body))
    expect(took >= 0.115, "answered after %.3f s" % took)
    for bad in ("/delay", "/delay?ms=x", "/delay?ms=-1", "/delay?ms=10001", "/delay?ms=1e3"):
        expect(get(srv, bad).status == 400, bad + " was not 400")
    expect(get(srv, "/delay?ms=0").body == b"waited 0 ms", "ms=0")


def c_beside(srv):
    """32 deferred responses in flight on the single worker; /fast answers at once."""
    held = []
    for _ in range(32):
        s = srv.conn()
        s.sendall(b"GET /delay?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        held.append(s)
    time.sleep(0.05)
    s = srv.conn()
    worst = 0
    t0 = time.time()
    for _ in range(50):
        t = time.time()
        s.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        r, _ = read_response(s)
        expect(r.body == b"fast", "fast")
        worst = max(worst, time.time() - t)
    total = time.time() - t0
    s.close()
    expect(total < 1.2 * SLOW, "50 /fast took %.3f s while 32 /delay were held" % total)
    for h in held:
        r, _ = read_response(h, limit=5)
        expect(r.body == b"waited 1500 ms", "held one: %r" % r.body)
        h.close()


def c_pipeline(srv):
    s = srv.conn()
    s.sendall(b"GET /delay?ms=150 HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /delay?ms=0 HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /events?n=2&every=10 HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
    rest = b""
    bodies = []
    for _ in range(6):
        r, rest = read_response(s, rest)
        bodies.append(r.body)
    s.close()
    want = [b"waited 150 ms", b"fast", b"waited 0 ms", b"fast",
            b"event: tick\nid: 1\ndata: tick 1\n\nevent: tick\nid: 2\ndata: tick 2\n\n", b"fast"]
    expect(bodies == want, repr(bodies))


def c_pipeline_held_input(srv):
    """200 KiB of requests behind a deferred one: reading pauses, all answered in order."""
    s = srv.conn()
    n = 3000
    reqs = b"GET /delay?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n" * n
    sender = threading.Thread(target=s.sendall, args=(reqs,))
    sender.start()
    r, rest = read_response(s, limit=10)
    expect(r.body == b"waited 200 ms", "first: %r" % r.body)
    got = 0
    for _ in range(n):
        r, rest = read_response(s, rest, limit=10)
        if r.body == b"fast":
            got += 1
    sender.join(10)
    s.close()
    expect(got == n, "%d of %d /fast after the held one" % (got, n))


def c_leave(srv):
    for i in range(30):
        for target in (b"/delay?ms=30", b"/offload?ms=20", b"/stream?bytes=100000000", b"/events?n=1000&every=5",
                       b"/subscribe"):
            s = srv.conn()
            s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            if i % 2 and target not in (b"/delay?ms=30", b"/offload?ms=20"):
                s.recv(100)  # mid-stream
            if i % 3 == 0:  # a reset rather than a close
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
    time.sleep(0.3 * SLOW)
    expect(get(srv, "/fast").body == b"fast", "alive after 150 clients left")


def c_offload(srv):
    r = get(srv, "/offload?ms=50")
    expect(r.status == 200 and r.body == b"slept 50 ms", repr(r.body))
    expect(get(srv, "/offload?ms=z").status == 400, "bad ms")
    # four 200 ms sleeps on a pool of two threads take two rounds, and /fast
    # still answers at once meanwhile
    socks = []
    t = time.time()
    for _ in range(4):
        s = srv.conn()
        s.sendall(b"GET /offload?ms=200 HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    t_fast = time.time()
    expect(get(srv, "/fast").body == b"fast", "fast")
    t_fast = time.time() - t_fast
    for s in socks:
        r, _ = read_response(s, limit=5)
        expect(r.body == b"slept 200 ms", repr(r.body))
        s.close()
    took = time.time() - t
    expect(took >= 0.39, "4 x 200 ms on 2 threads took only %.3f s" % took)
    expect(t_fast < 0.2 * SLOW, "/fast took %.3f s beside the pool's work" % t_fast)


def c_stream(srv):
    r = get(srv, "/stream?bytes=1000000&chunk=1000", limit=10)
    want = bytes((97 + i % 26) for i in range(1000000))
    expect(r.status == 200 and r.headers.get("transfer-encoding") == "chunked", "head %r" % r.headers)
    expect(r.headers.get("content-type") == "application/octet-stream", "type")
    expect(r.body == want, "body differs (%d bytes)" % len(r.body))
    expect(all(len(c) == 1000 for c in r.chunks) and len(r.chunks) == 1000, "chunks of K bytes")
    r = get(srv, "/stream?bytes=0")
    expect(r.body == b"" and r.chunks == [], "empty")
    r = get(srv, "/stream?bytes=100")  # default chunk 16384
    expect(r.body == want[:100], "100")
    expect(get(srv, "/stream").status == 400 and get(srv, "/stream?bytes=5&chunk=0").status == 400, "400s")


def c_stream_http10(srv):
    s = srv.conn()
    s.sendall(b"GET /stream?bytes=70000&chunk=7000 HTTP/1.0\r\n\r\n")
    raw = recv_all(s, 5)
    s.close()
    head, body = raw.split(b"\r\n\r\n", 1)
    expect(b"Transfer-Encoding" not in head and b"Content-Length" not in head, "framing header in %r" % head)
    expect(b"Connection: close" in head, "no Connection: close")
    expect(body == bytes((97 + i % 26) for i in range(70000)), "close-delimited body differs (%d)" % len(body))
    # HTTP/1.0 asking for keep-alive still gets a close: the body ends with it
    s = srv.conn()
    s.sendall(b"GET /stream?bytes=10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    raw = recv_all(s, 5)
    s.close()
    expect(raw.endswith(b"\r\n\r\nabcdefghij") and b"Connection: close" in raw, repr(raw))


def c_stream_head(srv):
    s = srv.conn()
    s.sendall(b"HEAD /stream?bytes=1000000 HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
    r, rest = read_response(s, head_only=True)
    expect(r.status == 200 and r.headers.get("transfer-encoding") == "chunked", "HEAD head %r" % r.headers)
    r2, rest = read_response(s, rest)
    expect(r2.body == b"fast", "the next response came right after the head: %r" % r2.body)
    s.close()
    s = srv.conn()
    s.sendall(b"HEAD /events?n=3 HTTP/1.1\r\nHost: x\r\n\r\nGET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
    r, rest = read_response(s, head_only=True)
    r2, rest = read_response(s, rest)
    expect(r.headers.get("content-type") == "text/event-stream" and r2.body == b"fast", "HEAD /events")
    s.close()


def c_slow_reader(srv):
    """A 1 GiB stream to a client that reads slowly: the server's RSS stays flat."""
    before = srv.rss_kib()
    s = srv.conn(timeout=10)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(b"GET /stream?bytes=1073741824 HTTP/1.1\r\nHost: x\r\n\r\n")
    peak = 0
    got = 0
    t = time.time()
    while time.time() - t < 2.0:
        got += len(s.recv(65536))
        time.sleep(0.005)  # about 10 MB/s at most
        peak = max(peak, srv.rss_kib())
    time.sleep(0.5)
    peak = max(peak, srv.rss_kib())
    s.close()
    grew = peak - before
    print("# slow reader: read %.1f MiB in 2 s; server RSS %d KiB before, %d KiB at peak (+%d KiB)"
          % (got / 1048576.0, before, peak, grew))
    expect(got > 0, "nothing read")
    expect(grew < 16 * 1024, "RSS grew by %d KiB" % grew)
    expect(get(srv, "/fast").body == b"fast", "alive")


def c_sse_bytes(srv):
    s = srv.conn()
    s.sendall(b"GET /events?n=3&every=10 HTTP/1.1\r\nHost: x\r\n\r\n")
    raw = recv_until(s, b"0\r\n\r\n")
    s.close()
    head, body = raw.split(b"\r\n\r\n", 1)
    head += b"\r\n"
    expect(b"Content-Type: text/event-stream\r\n" in head and b"Cache-Control: no-cache\r\n" in head, repr(head))
    expect(b"Transfer-Encoding: chunked\r\n" in head, "chunked")
    ev = [b"event: tick\nid: %d\ndata: tick %d\n\n" % (i, i) for i in (1, 2, 3)]
    want = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in ev) + b"0\r\n\r\n"
    expect(body == want, "body %r" % body)
    # Last-Event-ID: 3 of 5 starts at 4
    r = get(srv, "/events?n=5&every=10", headers="Last-Event-ID: 3\r\n")
    expect(r.body == b"event: tick\nid: 4\ndata: tick 4\n\nevent: tick\nid: 5\ndata: tick 5\n\n", repr(r.body))
    r = get(srv, "/events?n=2&every=10", headers="Last-Event-ID: 2\r\n")
    expect(r.body == b"", "nothing after the last: %r" % r.body)


def subscribe(srv, n):
    subs = []
    for _ in range(n):
        s = srv.conn()
        s.sendall(b"GET /subscribe HTTP/1.1\r\nHost: x\r\n\r\n")
        head = recv_until(s, b"\r\n\r\n")
        expect(b"text/event-stream" in head, "subscribe head %r" % head)
        subs.append(s)
    return subs


def publish(srv, body):
    s = srv.conn()
    s.sendall(b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    r, _ = read_response(s)
    s.close()
    return r.status


def c_publish_lines(srv):
    subs = subscribe(srv, 3)
    time.sleep(0.05)
    cases = [(b"a\nb\r\nc\rd", b"data: a\ndata: b\ndata: c\ndata: d\n\n"),
             (b"x\n", b"data: x\n\n"),
             (b"", b"data: \n\n"),
             (b"p\r\n\r\nq", b"data: p\ndata: \ndata: q\n\n")]
    for body, want in cases:
        expect(publish(srv, body) == 204, "publish status")
        framed = b"%x\r\n%s\r\n" % (len(want), want)
        for s in subs:
            got = recv_until(s, framed, 3)
            expect(got == framed, "for %r got %r" % (body, got))
    for s in subs:
        s.close()


def c_pubsub_workers(srv2):
    subs = subscribe(srv2, 24)  # spread over both workers by SO_REUSEPORT
    time.sleep(0.05)
    for k in range(5):
        msg = b"message %d" % k
        expect(publish(srv2, msg) == 204, "publish")
        want = b"data: " + msg + b"\n\n"
        missing = 0
        for s in subs:
            if want not in recv_until(s, want, 3):
                missing += 1
        expect(missing == 0, "%d of 24 subscribers missed %r" % (missing, msg))
    for s in subs:
        s.close()


def c_timer_order(srv):
    socks = []
    for ms in (300, 100, 200, 0):
        s = srv.conn()
        s.sendall(b"GET /delay?ms=%d HTTP/1.1\r\nHost: x\r\n\r\n" % ms)
        socks.append((ms, s))
    done = []
    lock = threading.Lock()

    def wait(ms, s):
        r, _ = read_response(s)
        with lock:
            done.append(ms)
    th = [threading.Thread(target=wait, args=a) for a in socks]
    for t in th:
        t.start()
    for t in th:
        t.join(5 * SLOW)
    for _, s in socks:
        s.close()
    expect(done == [0, 100, 200, 300], "finished in order %r" % done)


def c_sigterm():
    srv = Server(workers=2, grace=2)
    ev = srv.conn(timeout=10)
    ev.sendall(b"GET /events?n=100000&every=50 HTTP/1.1\r\nHost: x\r\n\r\n")
    st = srv.conn(timeout=10)
    st.sendall(b"GET /stream?bytes=1073741824 HTTP/1.1\r\nHost: x\r\n\r\n")
    dl = srv.conn(timeout=10)
    dl.sendall(b"GET /delay?ms=9000 HTTP/1.1\r\nHost: x\r\n\r\n")
    sub = subscribe(srv, 1)[0]
    recv_until(ev, b"tick 2")
    time.sleep(0.2)
    t = time.time()
    srv.sigterm()
    events = recv_all(ev, 8)
    r, _ = read_response(dl, limit=8)
    subraw = recv_all(sub, 8)
    rc, err = srv.stop()
    took = time.time() - t
    for s in (ev, st, dl, sub):
        s.close()
    expect(events.endswith(b"\n\n\r\n0\r\n\r\n"), "the event stream did not end with its last chunk: %r" % events[-40:])
    expect(subraw.endswith(b"0\r\n\r\n"), "the subscription did not end with its last chunk: %r" % subraw[-40:])
    expect(r.status == 503, "the unfinished deferred got %d" % r.status)
    expect(took < 6 * SLOW, "stopped after %.1f s (grace 2 s)" % took)
    expect(rc == 0, "exit status %d: %s" % (rc, err[-2000:]))
    expect("Sanitizer" not in err and "runtime error" not in err, err[-2000:])


def main():
    srv = Server(workers=1)
    case("GET /fast answers at once", c_fast, srv)
    case("GET /delay?ms=N: a worker timer answers after N ms; bad ms: 400", c_delay, srv)
    case("one worker: 32 deferred responses in flight, /fast still at once", c_beside, srv)
    case("pipelined /delay, /fast, /delay?ms=0, /fast, /events, /fast answered in order", c_pipeline, srv)
    case("200 KiB pipelined behind a deferred response: reading pauses, all answered in order",
         c_pipeline_held_input, srv)
    case("clients leave mid-defer, mid-offload, mid-stream, mid-events (close and reset)", c_leave, srv)
    case("GET /offload: blocking work on the pool (2 threads); the worker stays free", c_offload, srv)
    case("GET /stream: exact bytes, chunked, K bytes a chunk", c_stream, srv)
    case("GET /stream over HTTP/1.0: close-delimited, Connection: close", c_stream_http10, srv)
    case("HEAD /stream and HEAD /events: the head only, the connection goes on", c_stream_head, srv)
    case("a 1 GiB /stream to a slow reader: server RSS bounded", c_slow_reader, srv)
    case("SSE framing byte by byte; Last-Event-ID", c_sse_bytes, srv)
    case("SSE multi-line data split at LF, CRLF and CR (publish to 3 subscribers)", c_publish_lines, srv)
    case("timers finish /delay responses in due order", c_timer_order, srv)
    rc, err = srv.stop()
    case("SIGTERM after all that: exit 0, no sanitizer report",
         lambda: None if rc == 0 and "Sanitizer" not in err and "runtime error" not in err
         else "exit %d: %s" % (rc, err[-3000:]))
    srv2 = Server(workers=2)
    case("publish reaches every subscriber on both workers (5 messages x 24)", c_pubsub_workers, srv2)
    rc, err = srv2.stop()
    case("two workers: SIGTERM, exit 0, no sanitizer report",
         lambda: None if rc == 0 and "Sanitizer" not in err else "exit %d: %s" % (rc, err[-3000:]))
    case("SIGTERM with streams, SSE and a deferred response in flight: last chunks, 503, exit 0 within the grace",
         c_sigterm)
    sys.exit(httptest.summary())


if __name__ == "__main__":
    main()
