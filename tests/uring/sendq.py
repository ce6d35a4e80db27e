#!/usr/bin/env python3
"""Black-box tests of the io_uring backend's queued sends (issue 14).

    tests/uring/sendq.py --bench ./build/bench-uring-asan [--files ./build/files-uring]

Under CHOPIN_USE_IO_URING a send copies the answer into chunks the worker
owns and queues it on the ring (at most CHI_UR_SENDQ bytes per connection;
"writable" when the queue drains); shutdown and close wait for the queue.
These tests go where that can lose, reorder or leak bytes: answers much
larger than the queue (read fast, and read slowly through a small receive
buffer), answers followed at once by a close (Connection: close, HTTP/1.0,
a half-closed client, a refused request after a good one: the lingering
close's shutdown), pipelined answers of mixed sizes in order, a file body
after a queued head (examples/files.c), and clients that reset mid-answer
(the server keeps serving; the sanitizer build finds no error or leak at
exit). Last line: "N passed, N failed"."""
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import httptest  # noqa: E402 (tests/httptest.py)
from httptest import free_port, result  # noqa: E402


class Server:
    def __init__(self, binary, env):
        self.port = free_port()
        e = dict(os.environ)
        e.update(env)
        e["PORT"] = str(self.port)
        e["HOST"] = "127.0.0.1"
        e.setdefault("CHOPIN_WORKERS", "1")
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([binary], env=e, stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError("server did not start: " + self.stderr_text())

    def stderr_text(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def stop(self):
        """SIGTERM; returns (exit code, stderr)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        return rc, self.stderr_text()


def connect(port, rcvbuf=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    return s


class Reader:
    """Reads HTTP/1.1 answers (Content-Length bodies) off a socket, optionally slowly."""

    def __init__(self, sock, chunk=65536, pause=0.0):
        self.s = sock
        self.buf = b""
        self.chunk = chunk
        self.pause = pause
        self.eof = False

    def fill(self):
        if self.pause:
            time.sleep(self.pause)
        d = self.s.recv(self.chunk)
        if not d:
            self.eof = True
            return False
        self.buf += d
        return True

    def answer(self):
        """(status, headers dict, body) or None at EOF."""
        while b"\r\n\r\n" not in self.buf:
            if not self.fill():
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for ln in lines[1:]:
            k, v = ln.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        n = int(hdrs.get("content-length", "0"))
        body = []
        have = 0
        while True:
            take = min(n - have, len(self.buf))
            if take:
                body.append(self.buf[:take])
                self.buf = self.buf[take:]
                have += take
            if have == n:
                break
            if not self.fill():
                return None
        return status, hdrs, b"".join(body)

    def at_eof(self):
        """True when the server closed cleanly (FIN) with nothing more to read."""
        try:
            while not self.eof:
                if not self.fill():
                    break
                if self.buf:
                    return False
        except OSError:
            return False
        return self.eof and not self.buf


def echo_request(body, close=False, version="1.1"):
    return ("POST /echo HTTP/%s\r\nHost: t\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n%s\r\n"
            % (version, len(body), "Connection: close\r\n" if close else "")).encode() + body


def send_all(s, data):
    s.sendall(data)


def echo_once(port, body, close=False, rcvbuf=0, chunk=65536, pause=0.0, half_close=False):
    s = connect(port, rcvbuf)
    try:
        # the request goes in while the answer comes back: a thread is not
        # needed, the echo's body is read whole before the answer starts
        send_all(s, echo_request(body, close))
        if half_close:
            s.shutdown(socket.SHUT_WR)
        r = Reader(s, chunk, pause)
        a = r.answer()
        eof = r.at_eof() if (close or half_close) else None
        return a, eof
    finally:
        s.close()


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


def plaintext_ok(port):
    try:
        s = connect(port)
        s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")
        a = Reader(s).answer()
        s.close()
        return a is not None and a[0] == 200 and a[2] == b"Hello, World!"
    except OSError:
        return False


def bench_tests(binary):
    rnd = random.Random(14)
    srv = Server(binary, {})
    port = srv.port
    try:
        big = rnd.randbytes(6 * 1024 * 1024)
        a, _ = echo_once(port, big)
        result("a 6 MiB answer (48 queues' worth) arrives whole", a is not None and a[0] == 200 and a[2] == big,
               "got %s bytes" % (len(a[2]) if a else None))

        # quiet sends (a whole send posts no completion) must never leave
        # bytes waiting for the next event: the worker's tick comes once a
        # second, so an answer that waited for it would take ~1 s here
        s = connect(port)
        reqs = b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n" * 100
        slow = []
        for cut in (5, 40, 41, 300, 1000, 2000, len(reqs) - 3):
            t0 = time.time()
            s.sendall(reqs[:cut])
            time.sleep(0.002)
            s.sendall(reqs[cut:])
            r = Reader(s)
            n = 0
            while n < 100 and r.answer() is not None:
                n += 1
            if n != 100 or time.time() - t0 > 0.5:
                slow.append("cut %d: %d answers in %.3f s" % (cut, n, time.time() - t0))
        t0 = time.time()
        for i in range(300):
            s.sendall(reqs[:38] if i % 3 else echo_request(b"x" * (5000 + 3000 * (i % 4))))
            if Reader(s).answer() is None:
                slow.append("request %d: no answer" % i)
                break
        if time.time() - t0 > 0.9:
            slow.append("300 requests one at a time took %.3f s" % (time.time() - t0))
        s.close()
        result("pipelined answers split over several chunks, and 300 answers one at a time, come at once (none "
               "waits for the tick)", not slow, "; ".join(slow))

        mid = rnd.randbytes(3 * 1024 * 1024 + 17)
        a, _ = echo_once(port, mid, rcvbuf=8192, chunk=16384, pause=0.0005)
        result("a 3 MiB answer to a slow reader with a small receive buffer arrives whole (queue full, drained, "
               "refilled)", a is not None and a[2] == mid)

        a, eof = echo_once(port, mid, close=True)
        result("Connection: close after a 3 MiB answer: every byte, then a clean end (the close waits for the queue)",
               a is not None and a[2] == mid and a[1].get("connection") == "close" and eof,
               "answer %s, eof %s" % (len(a[2]) if a else None, eof))

        a, eof = echo_once(port, mid, close=True, rcvbuf=8192, chunk=16384, pause=0.0005)
        result("Connection: close to a slow reader: every byte, then a clean end", a is not None and a[2] == mid and eof)

        a, eof = echo_once(port, mid, half_close=True)
        result("a half-closed client (its write side shut after the request) gets the whole 3 MiB, then the end",
               a is not None and a[2] == mid and eof)

        ok = True
        for i in range(40):
            s = connect(port)
            s.sendall(b"GET /plaintext HTTP/1.0\r\n\r\n" if i % 2 else
                      b"GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            r = Reader(s)
            a = r.answer()
            ok = ok and a is not None and a[2] == b"Hello, World!" and r.at_eof()
            s.close()
        result("40 short closing answers (HTTP/1.0 and Connection: close): each whole, then a clean end", ok)

        # a refused request after a good one: answer, 400, then the lingering
        # close's shutdown, which must wait for both answers to be sent
        s = connect(port)
        body = rnd.randbytes(700 * 1024)
        s.sendall(echo_request(body) + b"GET /\x01bad HTTP/1.1\r\nHost: t\r\n\r\n")
        r = Reader(s)
        a1 = r.answer()
        a2 = r.answer()
        eof = r.at_eof()
        s.close()
        result("a 700 KiB answer, then a 400 for the bad request behind it, then the write side shut (after both)",
               a1 is not None and a1[2] == body and a2 is not None and a2[0] == 400 and eof,
               "%s %s %s" % (a1 and len(a1[2]), a2 and a2[0], eof))

        # pipelined answers of mixed sizes, in order, in one write
        reqs = []
        want = []
        for i in range(120):
            k = i % 4
            if k == 0:
                reqs.append(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")
                want.append(b"Hello, World!")
            elif k == 1:
                b = ("%d:" % i).encode() * (1 + rnd.randrange(40000))
                reqs.append(echo_request(b))
                want.append(b)
            elif k == 2:
                reqs.append(b"GET /json HTTP/1.1\r\nHost: t\r\n\r\n")
                want.append(None)
            else:
                b = ("<%d>" % i).encode()
                reqs.append(echo_request(b))
                want.append(b)
        s = connect(port)
        s.sendall(b"".join(reqs))
        r = Reader(s)
        bad = None
        for i, w in enumerate(want):
            a = r.answer()
            if a is None or a[0] != 200 or (w is not None and a[2] != w) or (w is None and b"message" not in a[2]):
                bad = i
                break
        s.close()
        result("120 pipelined answers (small, up to 200 KiB, JSON) arrive whole and in order", bad is None,
               "answer %s wrong" % bad)

        # clients that reset while their answer is queued
        for i in range(12):
            s = connect(port, rcvbuf=8192)
            s.sendall(echo_request(big if i % 3 == 0 else mid))
            got = 0
            want_n = rnd.choice([0, 1, 5000, 100000])
            while got < want_n:
                d = s.recv(65536)
                if not d:
                    break
                got += len(d)
            rst_close(s)
        time.sleep(0.2)
        result("12 clients reset mid-answer: the server keeps serving", plaintext_ok(port))
        # and ones that send a request, then reset before reading anything
        for i in range(20):
            s = connect(port)
            s.sendall(b"GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n" * 50)
            rst_close(s)
        time.sleep(0.1)
        result("20 clients reset with 50 pipelined answers queued: the server keeps serving", plaintext_ok(port))
    finally:
        rc, err = srv.stop()
    bad = [ln for ln in err.splitlines() if "Sanitizer" in ln or "runtime error" in ln or "LeakSanitizer" in ln]
    result("the server stops cleanly: exit 0, no sanitizer report (no leak, no use after free)",
           rc == 0 and not bad, "rc %s %s" % (rc, "; ".join(bad[:3])))


def files_tests(binary):
    rnd = random.Random(7)
    root = tempfile.mkdtemp(prefix="sendq-")
    try:
        small = b"small file\n" * 10
        big = rnd.randbytes(5 * 1024 * 1024 + 3)
        with open(os.path.join(root, "small.txt"), "wb") as f:
            f.write(small)
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(big)
        updir = os.path.join(root, "up")
        os.mkdir(updir)
        srv = Server(binary, {"ROOT": root, "UPLOAD_DIR": updir})
        port = srv.port
        try:
            def get(path, close=False):
                return ("GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n" % (path, "Connection: close\r\n" if close else "")).encode()

            s = connect(port)
            s.sendall(get("/static/small.txt") + get("/static/big.bin") + get("/static/small.txt") +
                      get("/static/big.bin") + get("/static/small.txt"))
            r = Reader(s)
            got = [r.answer() for _ in range(5)]
            s.close()
            want = [small, big, small, big, small]
            result("pipelined files: each queued head, then its file body (sendfile after the queue), in order",
                   all(a is not None and a[0] == 200 and a[2] == w for a, w in zip(got, want)),
                   str([(a[0], len(a[2])) if a else None for a in got]))

            s = connect(port, rcvbuf=8192)
            s.sendall(get("/static/big.bin", close=True))
            r = Reader(s, 16384, 0.0002)
            a = r.answer()
            eof = r.at_eof()
            s.close()
            result("a 5 MiB file with Connection: close to a slow reader: whole, then a clean end",
                   a is not None and a[2] == big and eof)

            for i in range(6):
                s = connect(port, rcvbuf=8192)
                s.sendall(get("/static/small.txt") + get("/static/big.bin"))
                s.recv(1000 * i + 1)
                rst_close(s)
            time.sleep(0.1)
            s = connect(port)
            s.sendall(get("/static/small.txt"))
            a = Reader(s).answer()
            s.close()
            result("clients that reset during a queued head and its file: the server keeps serving",
                   a is not None and a[2] == small)
        finally:
            rc, err = srv.stop()
        result("the files server stops cleanly (exit 0)", rc == 0, "rc %s: %s" % (rc, err[-300:]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main():
    args = sys.argv[1:]
    bench = files = None
    while args:
        if args[0] == "--bench" and len(args) > 1:
            bench = args[1]
            args = args[2:]
        elif args[0] == "--files" and len(args) > 1:
            files = args[1]
            args = args[2:]
        else:
            print("usage: sendq.py --bench BIN [--files BIN]")
            print("0 passed, 1 failed")
            return 1
    for name, fn, b in (("bench", bench_tests, bench), ("files", files_tests, files)):
        if not b:
            continue
        try:
            fn(b)
        except Exception as ex:  # a hang or a crash is a failure, never a silent skip
            result("%s tests ran to the end" % name, False, repr(ex))
    return httptest.summary()


if __name__ == "__main__":
    sys.exit(main())
