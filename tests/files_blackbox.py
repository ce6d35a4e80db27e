#!/usr/bin/env python3
"""Black-box tests of examples/files.c (build/files) over real sockets.

    tests/files_blackbox.py ./build/files [--rest ./build/rest] [--big-mb N]

Static files (MIME, HEAD, validators and 304 precedence, every Range edge,
If-Range, precompressed siblings and Vary, every traversal attempt, a file
replaced by a symlink), sendfile to a slow reader, a client leaving
mid-file, pipelining behind a file, streamed uploads (multipart split at
many offsets, CRLF edges, missing final boundary, a part with no name,
10,000 parts, chunked framing, PUT /raw/:name and its name checks),
Expect: 100-continue decided by the route (and by the bearer middleware of
build/rest when given), and a big upload and download with the server's
peak RSS reported and bounded. Last line: "N passed, N failed"."""
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httptest  # noqa: E402 (found beside this file)
from httptest import free_port, result  # noqa: E402

SECRET = b"TOP-SECRET-OUTSIDE-ROOT"


SLOW = 6 if os.environ.get("FILES_VALGRIND") == "1" else 1  # valgrind runs the server ~20x slower


class Server(httptest.Server):
    """A server binary with `env` (one worker unless it says), under
    valgrind when FILES_VALGRIND=1 (make files-memcheck)."""

    def __init__(self, binary, env):
        env = dict(env)
        env.setdefault("CHOPIN_WORKERS", os.environ.get("CHOPIN_WORKERS", "1"))
        cmd = [binary]
        if os.environ.get("FILES_VALGRIND") == "1":  # make files-memcheck
            cmd = ["valgrind", "-q", "--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=definite",
                   "--track-fds=no", binary]
        httptest.Server.__init__(self, cmd, env, start_timeout=30)

    def rss_kb(self, key="VmHWM"):
        return self.proc_status(key)

    def stop(self):
        return httptest.Server.stop(self, timeout=20 * SLOW)


def connect(port, timeout=10):
    return httptest.connect(port, timeout * SLOW)


def read_response(s, head_only=False, buf=b""):
    """Reads one response; returns (status, headers dict lower-case, body, rest)."""
    r, rest = httptest.read_response(s, buf, head_only)
    return r.status, r.headers, r.body, rest


def request(port, method, target, headers=None, body=b"", head_only=None):
    s = connect(port)
    h = {"Host": "x"}
    h.update(headers or {})
    if body and "Content-Length" not in h and "Transfer-Encoding" not in h:
        h["Content-Length"] = str(len(body))
    req = "%s %s HTTP/1.1\r\n" % (method, target) + "".join("%s: %s\r\n" % kv for kv in h.items()) + "\r\n"
    s.sendall(req.encode("latin-1") + body)
    st, hd, b, _ = read_response(s, head_only=(method == "HEAD") if head_only is None else head_only)
    s.close()
    return st, hd, b


def raw(port, data, timeout=5):
    """Sends bytes as they are; returns everything until the server closes or goes quiet."""
    s = connect(port, timeout)
    s.sendall(data)
    out = b""
    try:
        while True:
            c = s.recv(65536)
            if not c:
                break
            out += c
            if b"\r\n\r\n" in out:
                s.settimeout(0.3)
    except socket.timeout:
        pass
    s.close()
    return out


def make_tree(base):
    root = os.path.join(base, "public")
    os.makedirs(os.path.join(root, "sub"))
    os.makedirs(os.path.join(base, "outside"))
    with open(os.path.join(base, "outside", "secret.txt"), "wb") as f:
        f.write(SECRET)
    with open(os.path.join(base, "secret.txt"), "wb") as f:
        f.write(SECRET)
    with open(os.path.join(root, "index.html"), "wb") as f:
        f.write(b"<!doctype html><title>files</title>\n")
    files = {
        "a.txt": b"0123456789" * 10,
        "style.css": b"body{color:red}\n" * 50,
        "app.js": b"console.log(1);\n",
        "data.json": b'{"a":1}',
        "img.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)),
        "blob.unknownext": b"?",
        "sub/deep.txt": b"deep",
        "empty.txt": b"",
        ".hidden": SECRET,
    }
    for name, data in files.items():
        with open(os.path.join(root, name), "wb") as f:
            f.write(data)
    with open(os.path.join(root, "style.css.gz"), "wb") as f:
        f.write(b"GZ-VERSION")
    with open(os.path.join(root, "style.css.br"), "wb") as f:
        f.write(b"BR-VERSION")
    with open(os.path.join(root, "only.js.gz"), "wb") as f:
        f.write(b"ONLY-GZ")
    with open(os.path.join(root, "only.js"), "wb") as f:
        f.write(b"only")
    rnd = random.Random(7)
    with open(os.path.join(root, "big.bin"), "wb") as f:
        f.write(bytes(rnd.getrandbits(8) for _ in range(1 << 16)) * 64)  # 4 MiB
    os.symlink(os.path.join(base, "outside", "secret.txt"), os.path.join(root, "escape"))
    os.symlink(os.path.join(base, "outside"), os.path.join(root, "dirlink"))
    os.symlink("../secret.txt", os.path.join(root, "relescape"))
    return root, files


def test_static(port, root, files):
    st, h, b = request(port, "GET", "/static/a.txt")
    result("GET a file: 200, bytes, length, validators, Accept-Ranges",
           st == 200 and b == files["a.txt"] and h.get("content-length") == "100" and h.get("etag", "").startswith('"')
           and "last-modified" in h and h.get("accept-ranges") == "bytes", "%d %r" % (st, h))
    st2, h2, b2 = request(port, "HEAD", "/static/a.txt")
    result("HEAD: the same head, no body", st2 == 200 and b2 == b"" and h2.get("content-length") == "100"
           and h2.get("etag") == h.get("etag"), "%d %r" % (st2, h2))
    out = raw(port, b"HEAD /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /static/a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    result("HEAD of a 4 MiB file sends the head only (then the next answer)",
           out.count(b"HTTP/1.1 200") == 2 and b"Content-Length: 4194304" in out and out.endswith(files["a.txt"])
           and len(out) < 2000, "%d bytes" % len(out))
    st, h, b = request(port, "GET", "/")
    result("GET / serves ROOT/index.html", st == 200 and b.startswith(b"<!doctype html>")
           and h.get("content-type", "").startswith("text/html"), "%d" % st)
    st, h, b = request(port, "GET", "/static/empty.txt")
    result("an empty file: 200 with Content-Length 0", st == 200 and b == b"" and h.get("content-length") == "0")
    st, h, b = request(port, "GET", "/static/sub/")
    result("a directory without an index: 404", st == 404)
    st, h, b = request(port, "GET", "/static/")
    result("the root directory serves its index.html", st == 200 and b.startswith(b"<!doctype"))
    st, h, b = request(port, "GET", "/static/nope.txt")
    result("a missing file: 404 JSON", st == 404 and h.get("content-type") == "application/json")
    st, h, b = request(port, "POST", "/static/a.txt", body=b"x")
    result("POST to a static file: 405 with Allow", st == 405 and "GET" in h.get("allow", ""))


def test_mime(port):
    want = {"a.txt": "text/plain; charset=utf-8", "style.css": "text/css; charset=utf-8",
            "app.js": "text/javascript; charset=utf-8", "data.json": "application/json", "img.png": "image/png",
            "blob.unknownext": "application/octet-stream", "index.html": "text/html; charset=utf-8"}
    bad = []
    for name, ctype in want.items():
        st, h, _ = request(port, "GET", "/static/" + name)
        if st != 200 or h.get("content-type") != ctype:
            bad.append("%s: %d %s" % (name, st, h.get("content-type")))
    result("MIME types by extension", not bad, "; ".join(bad))


def test_ranges(port, files):
    data = files["a.txt"]
    size = len(data)
    _, h0, _ = request(port, "GET", "/static/a.txt")
    etag, lm = h0["etag"], h0["last-modified"]
    cases = [
        ("bytes=0-0", 206, data[0:1], "bytes 0-0/100"),
        ("bytes=0-9", 206, data[0:10], "bytes 0-9/100"),
        ("bytes=99-99", 206, data[99:], "bytes 99-99/100"),
        ("bytes=-1", 206, data[99:], "bytes 99-99/100"),
        ("bytes=-10", 206, data[90:], "bytes 90-99/100"),
        ("bytes=-1000", 206, data, "bytes 0-99/100"),
        ("bytes=50-", 206, data[50:], "bytes 50-99/100"),
        ("bytes=90-1000", 206, data[90:], "bytes 90-99/100"),
        ("bytes=100-", 416, None, "bytes */100"),
        ("bytes=1000-2000", 416, None, "bytes */100"),
        ("bytes=-0", 416, None, "bytes */100"),
        ("items=0-5", 200, data, None),
        ("bytes=5-2", 200, data, None),
        ("bytes=abc", 200, data, None),
        ("bytes=0-1,5-6", 200, data, None),
    ]
    for rng, want, body, crange in cases:
        st, h, b = request(port, "GET", "/static/a.txt", {"Range": rng})
        ok = st == want and (body is None or b == body) and h.get("content-range") == crange
        if want == 206:
            ok = ok and h.get("content-length") == str(len(body))
        result("Range %s -> %d" % (rng, want), ok, "%d %r %r" % (st, h.get("content-range"), b[:20]))
    st, h, b = request(port, "HEAD", "/static/a.txt", {"Range": "bytes=0-9"})
    result("HEAD with Range: ignored (RFC 9110 14.2: GET only), 200 head, Content-Length 100",
           st == 200 and h.get("content-length") == "100" and "content-range" not in h and b == b"", "%d %r" % (st, h))
    st, h, b = request(port, "GET", "/static/a.txt", {"Range": "bytes=95-99999999999999999999999"})
    result("Range with a last byte past 18 digits: clamped, 206", st == 206 and b == data[95:]
           and h.get("content-range") == "bytes 95-99/100", "%d %r" % (st, h))
    st, h, b = request(port, "GET", "/static/a.txt", {"Range": "bytes=99999999999999999999999-"})
    result("Range with a first byte past 18 digits: 416", st == 416 and h.get("content-range") == "bytes */100")
    st, h, b = request(port, "GET", "/static/empty.txt", {"Range": "bytes=0-0"})
    result("Range on an empty file: 416", st == 416 and h.get("content-range") == "bytes */0")
    st, h, b = request(port, "GET", "/static/a.txt", {"Range": "bytes=0-4", "If-Range": etag})
    result("If-Range with the current ETag: 206", st == 206 and b == data[:5])
    st, h, b = request(port, "GET", "/static/a.txt", {"Range": "bytes=0-4", "If-Range": '"stale"'})
    result("If-Range with a stale ETag: 200, whole file", st == 200 and b == data)
    st, h, b = request(port, "GET", "/static/a.txt", {"Range": "bytes=0-4", "If-Range": "W/" + etag})
    result("If-Range with a weak ETag: 200 (strong comparison)", st == 200 and b == data)
    came = wait_date_past(port, "/static/a.txt", lm)  # a date in the Date's own second is weak (8.8.2.2)
    st, h, b = request(port, "GET", "/static/a.txt", {"Range": "bytes=0-4", "If-Range": lm})
    result("If-Range with the Last-Modified date: 206", came and st == 206 and b == data[:5])
    st, h, b = request(port, "GET", "/static/a.txt", {"Range": "bytes=0-4", "If-Range": "Sat, 01 Jan 2000 00:00:00 GMT"})
    result("If-Range with an older date: 200", st == 200 and b == data)
    big = open(os.path.join(ROOT, "big.bin"), "rb").read()
    st, h, b = request(port, "GET", "/static/big.bin", {"Range": "bytes=1000000-3000000"})
    result("a 2 MB range in the middle of a 4 MiB file", st == 206 and b == big[1000000:3000001])
    del size


def test_conditionals(port):
    _, h0, _ = request(port, "GET", "/static/a.txt")
    etag, lm = h0["etag"], h0["last-modified"]
    old, future = "Sat, 01 Jan 2000 00:00:00 GMT", "Fri, 01 Jan 2100 00:00:00 GMT"
    cases = [
        ({"If-None-Match": etag}, 304),
        ({"If-None-Match": '"x", ' + etag}, 304),
        ({"If-None-Match": "W/" + etag}, 304),
        ({"If-None-Match": "*"}, 304),
        ({"If-None-Match": '"other"'}, 200),
        ({"If-Modified-Since": lm}, 304),
        ({"If-Modified-Since": future}, 304),
        ({"If-Modified-Since": old}, 200),
        ({"If-Modified-Since": "garbage"}, 200),
        ({"If-None-Match": '"other"', "If-Modified-Since": future}, 200),  # If-None-Match wins
        ({"If-None-Match": etag, "If-Modified-Since": old}, 304),
        ({"If-Match": '"other"'}, 412),
        ({"If-Match": etag}, 200),
        ({"If-Unmodified-Since": old}, 412),
        ({"If-Match": '"other"', "If-None-Match": etag}, 412),
    ]
    for hd, want in cases:
        st, h, b = request(port, "GET", "/static/a.txt", hd)
        ok = st == want
        if want == 304:
            ok = ok and b == b"" and h.get("etag") == etag and "content-length" not in h
        result("conditional %s -> %d" % (hd, want), ok, "%d %r" % (st, h))
    st, h, b = request(port, "HEAD", "/static/a.txt", {"If-None-Match": etag})
    result("HEAD with a matching If-None-Match: 304", st == 304)
    # RFC 9110 5.6.7: the obsolete RFC 850 and asctime forms are dates too
    import email.utils
    t = email.utils.parsedate_to_datetime(lm)
    rfc850 = t.strftime("%A, %d-%b-%y %H:%M:%S GMT")
    asctime = t.strftime("%a %b ") + ("%2d" % t.day) + t.strftime(" %H:%M:%S %Y")
    bad = []
    for d in (rfc850, asctime):
        st, h, b = request(port, "GET", "/static/a.txt", {"If-Modified-Since": d})
        if st != 304:
            bad.append("%s -> %d" % (d, st))
    result("If-Modified-Since in the RFC 850 and asctime forms: 304", not bad, "; ".join(bad))
    st, h, b = request(port, "GET", "/static/a.txt", {"If-Unmodified-Since": "Saturday, 01-Jan-00 00:00:00 GMT"})
    result("If-Unmodified-Since in the RFC 850 form, before the file: 412", st == 412, str(st))


def test_precompressed(port):
    st, h, b = request(port, "GET", "/static/style.css", {"Accept-Encoding": "gzip, deflate"})
    result("gzip sibling: Content-Encoding gzip, Vary, the .gz bytes, the .css type",
           st == 200 and b == b"GZ-VERSION" and h.get("content-encoding") == "gzip" and h.get("vary") == "Accept-Encoding"
           and h.get("content-type") == "text/css; charset=utf-8", "%d %r" % (st, h))
    st, h, b = request(port, "GET", "/static/style.css", {"Accept-Encoding": "gzip, br"})
    result("br preferred when both are taken", st == 200 and b == b"BR-VERSION" and h.get("content-encoding") == "br")
    st, h, b = request(port, "GET", "/static/style.css", {"Accept-Encoding": "br;q=0, gzip"})
    result("br;q=0 refuses br", st == 200 and b == b"GZ-VERSION")
    st, h, b = request(port, "GET", "/static/style.css")
    result("no Accept-Encoding: the plain file, still Vary", st == 200 and b.startswith(b"body{") and
           "content-encoding" not in h and h.get("vary") == "Accept-Encoding")
    st, h, b = request(port, "GET", "/static/only.js", {"Accept-Encoding": "br"})
    result("only a .gz sibling and br asked: the plain file", st == 200 and b == b"only" and h.get("vary") == "Accept-Encoding")
    st, h, b = request(port, "GET", "/static/a.txt", {"Accept-Encoding": "gzip"})
    result("no sibling: no Content-Encoding, no Vary", st == 200 and "vary" not in h and "content-encoding" not in h)
    _, hp, _ = request(port, "GET", "/static/style.css")
    _, hg, _ = request(port, "GET", "/static/style.css", {"Accept-Encoding": "gzip"})
    result("each representation has its own ETag", hp.get("etag") != hg.get("etag"))
    st, h, b = request(port, "GET", "/static/style.css.gz")
    result("the sibling itself is served as application/gzip", st == 200 and h.get("content-type") == "application/gzip")


TRAVERSALS = [
    "/static/../secret.txt", "/static/../../secret.txt", "/static/%2e%2e/secret.txt", "/static/%2E%2E/secret.txt",
    "/static/.%2e/secret.txt", "/static/%2e./secret.txt", "/static/%2e%2e%2fsecret.txt", "/static/..%2fsecret.txt",
    "/static/..%2Fsecret.txt", "/static/sub/..%2f..%2fsecret.txt", "/static/sub/../../secret.txt",
    "/static/..%5csecret.txt", "/static/..%5Csecret.txt", "/static/sub/..%5c..%5csecret.txt", "/static/..\\secret.txt",
    "/static/%00", "/static/a.txt%00.png", "/static/%2fetc/passwd", "/static/%2f%2fetc%2fpasswd", "/static//etc/passwd",
    "/static/escape", "/static/dirlink/secret.txt", "/static/relescape", "/static/.hidden", "/static/sub/%2e%2e/.hidden",
    "/static/%252e%252e/secret.txt", "/static/....//secret.txt", "/static/./../secret.txt", "/static/sub/./../..",
    "/static/%c0%ae%c0%ae/secret.txt", "/static/..;/secret.txt", "/static/%2e%2e", "/static/..",
    "/../secret.txt", "/static/sub/%2e%2e%2f%2e%2e%2fsecret.txt", "/static/outside/../../outside/secret.txt",
]


def test_traversal(port, root, base):
    bad = []
    for t in TRAVERSALS:
        out = raw(port, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % t).encode("latin-1"))
        status = int(out.split(b" ", 2)[1]) if out.startswith(b"HTTP/1.1 ") else 0
        if status not in (400, 403, 404) or SECRET in out or b"root:" in out:
            bad.append("%s -> %d" % (t, status))
    result("every traversal attempt (%d) gets 400/403/404, never a byte outside the root" % len(TRAVERSALS), not bad,
           "; ".join(bad))
    out = raw(port, b"GET /static/a.txt\x00x HTTP/1.1\r\nHost: x\r\n\r\n")
    result("a raw NUL in the target: 400", out.startswith(b"HTTP/1.1 400"))
    p = os.path.join(root, "swap.txt")
    with open(p, "wb") as f:
        f.write(b"original")
    st1, _, b1 = request(port, "GET", "/static/swap.txt")
    os.unlink(p)
    os.symlink(os.path.join(base, "outside", "secret.txt"), p)
    time.sleep(0.01)
    # within the second the open-file cache may still serve the old inode (its
    # descriptor was opened beneath the root): never the link's target
    st2, _, b2 = request(port, "GET", "/static/swap.txt")
    time.sleep(1.1)
    st3, _, b3 = request(port, "GET", "/static/swap.txt")
    result("a file replaced by a symlink out of the root: the old file or a refusal at once, refused within a second",
           st1 == 200 and b1 == b"original" and ((st2 == 200 and b2 == b"original") or st2 in (403, 404)) and
           st3 in (403, 404) and SECRET not in b2 and SECRET not in b3, "%d %d %d" % (st1, st2, st3))
    with open(os.path.join(root, "changing.txt"), "wb") as f:
        f.write(b"v1")
    _, h1, b1 = request(port, "GET", "/static/changing.txt")
    time.sleep(0.02)
    with open(os.path.join(root, "changing.txt"), "wb") as f:
        f.write(b"version2")
    time.sleep(1.1)
    _, h2, b2 = request(port, "GET", "/static/changing.txt")
    result("a changed file is seen within a second (new bytes, new ETag)", b1 == b"v1" and b2 == b"version2" and
           h1.get("etag") != h2.get("etag"))


def test_slow_reader_and_leaving(srv, root):
    port = srv.port
    big = open(os.path.join(root, "big.bin"), "rb").read()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    s.connect(("127.0.0.1", port))
    s.settimeout(10 * SLOW)
    s.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    t0 = time.time()
    while len(got) < 200000:  # slowly at first: the server's sendfile stops short and waits
        got += s.recv(4096)
        time.sleep(0.002)
    # meanwhile another client is served at once
    st, _, b = request(port, "GET", "/static/a.txt")
    other_ok = st == 200
    while True:
        c = s.recv(1 << 20)
        if not c:
            break
        got += c
        if len(got) >= len(big) + 200:
            if b"\r\n\r\n" in got and len(got.split(b"\r\n\r\n", 1)[1]) >= len(big):
                break
    s.close()
    body = got.split(b"\r\n\r\n", 1)[1]
    result("a slow reader gets the whole 4 MiB file (sendfile resumed on writability), others served meanwhile",
           body == big and other_ok, "%d of %d bytes in %.1fs" % (len(body), len(big), time.time() - t0))
    for i in range(20):
        s = connect(port)
        s.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            s.recv(1000 * (i + 1))
        except OSError as e:
            raise RuntimeError("client %d of 20 leaving mid-file: %r" % (i, e))
        if i % 2:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")  # reset
        s.close()
    time.sleep(0.2)
    st, _, b = request(port, "GET", "/static/a.txt")
    result("clients leaving mid-file (close and reset, 20 times): the server goes on", st == 200 and srv.proc.poll() is None)
    fds = len(os.listdir("/proc/%d/fd" % srv.proc.pid))
    result("no descriptor left open by the abandoned files (%d open)" % fds, fds < 40, str(fds))


def test_pipelining(port, files):
    big = open(os.path.join(ROOT, "big.bin"), "rb").read()
    s = connect(port)
    s.sendall(b"GET /static/big.bin HTTP/1.1\r\nHost: x\r\n\r\nGET /static/a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /static/a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\nGET /static/sub/deep.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    r1 = read_response(s)
    r2 = read_response(s, buf=r1[3])
    r3 = read_response(s, buf=r2[3])
    r4 = read_response(s, buf=r3[3])
    s.close()
    result("pipelined behind a 4 MiB file: answers in order, bytes intact",
           r1[2] == big and r2[2] == files["a.txt"] and r3[0] == 206 and r3[2] == b"01" and r4[2] == b"deep")


def multipart_body(boundary, parts, final=True):
    out = b""
    for p in parts:
        out += b"--" + boundary + b"\r\n"
        cd = b'Content-Disposition: form-data'
        if p.get("name") is not None:
            cd += b'; name="' + p["name"] + b'"'
        if p.get("filename") is not None:
            cd += b'; filename="' + p["filename"] + b'"'
        out += cd + b"\r\n"
        if p.get("type"):
            out += b"Content-Type: " + p["type"] + b"\r\n"
        out += b"\r\n" + p["data"] + b"\r\n"
    if final:
        out += b"--" + boundary + b"--\r\n"
    return out


def upload(port, body, boundary=b"XbOuNdArY", split=None, chunked=False):
    s = connect(port)
    head = b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
    if chunked:
        head += b"Transfer-Encoding: chunked\r\n\r\n"
        payload = b""
        for i in range(0, len(body), 37):
            piece = body[i:i + 37]
            payload += b"%x\r\n" % len(piece) + piece + b"\r\n"
        payload += b"0\r\n\r\n"
    else:
        head += b"Content-Length: %d\r\n\r\n" % len(body)
        payload = body
    data = head + payload
    if split is None:
        s.sendall(data)
    else:
        cut = len(head) + split
        s.sendall(data[:cut])
        time.sleep(0.002)
        s.sendall(data[cut:])
    st, h, b, _ = read_response(s)
    s.close()
    try:
        j = json.loads(b)
    except ValueError:
        j = None
    return st, j


def saved(updir, name):
    with open(os.path.join(updir, name), "rb") as f:
        return f.read()


def test_uploads(port, updir):
    parts = [{"name": b"title", "data": b"hello world"},
             {"name": b"doc", "filename": b"a b.txt", "type": b"text/plain", "data": b"line1\r\nline2\r\n--XbOuNd\r\n"},
             {"name": b"bin", "filename": b"x.bin", "type": b"application/octet-stream", "data": bytes(range(256)) * 4},
             {"name": b"empty", "data": b""},
             {"name": b"crlf", "data": b"\r\n\r\n"}]
    body = multipart_body(b"XbOuNdArY", parts)
    st, j = upload(port, body)
    ok = st == 201 and j is not None and j["fields"] == {"title": "hello world", "empty": "", "crlf": "\r\n\r\n"} and \
        [f["field"] for f in j["files"]] == ["doc", "bin"] and j["files"][0]["filename"] == "a b.txt" and \
        j["files"][0]["bytes"] == len(parts[1]["data"]) and j["files"][1]["bytes"] == 1024 and \
        saved(updir, j["files"][0]["saved"]) == parts[1]["data"] and saved(updir, j["files"][1]["saved"]) == parts[2]["data"]
    result("multipart: fields and files, 201 JSON, files saved under generated names", ok, "%d %r" % (st, j))
    bad = []
    step = max(1, len(body) // 60)
    for cut in list(range(0, len(body), step)) + [len(body) - 1]:
        st, j = upload(port, body, split=cut)
        if st != 201 or j["fields"].get("crlf") != "\r\n\r\n" or saved(updir, j["files"][1]["saved"]) != parts[2]["data"]:
            bad.append(str(cut))
    result("multipart: the body split in two at %d offsets, same answer" % (len(body) // step + 1), not bad, ",".join(bad))
    st, j = upload(port, body, chunked=True)
    result("multipart with chunked framing", st == 201 and j["fields"]["title"] == "hello world")
    st, j = upload(port, multipart_body(b"XbOuNdArY", parts[:1], final=False))
    result("missing final boundary: 400 with the reason", st == 400 and "final boundary" in j.get("detail", ""), repr(j))
    st, j = upload(port, multipart_body(b"XbOuNdArY", [{"name": None, "data": b"x"}]))
    result("a part with no name: 400 with the reason", st == 400 and "without a name" in j.get("detail", ""), repr(j))
    st, j = upload(port, b"--XbOuNdArY\nContent-Disposition: form-data; name=a\n\nv\n--XbOuNdArY--\n")
    result("bare LF line ends: 400", st == 400)
    st, h, b = request(port, "POST", "/upload", {"Content-Type": "text/plain"}, b"abc")
    result("not multipart: 400 with the reason", st == 400 and b"multipart" in b)
    many = multipart_body(b"XbOuNdArY", [{"name": b"f%d" % i, "data": b"%d" % i} for i in range(10000)])
    st, j = upload(port, many)
    result("10,000 parts", st == 201 and len(j["fields"]) == 10000 and j["fields"]["f9999"] == "9999",
           "%d" % st)
    st, h, b = request(port, "PUT", "/raw/blob.bin", body=bytes(range(256)) * 100)
    result("PUT /raw/:name: 201 {\"bytes\":N}, the file written", st == 201 and json.loads(b) == {"bytes": 25600}
           and saved(updir, "blob.bin") == bytes(range(256)) * 100, "%d %r" % (st, b))
    st, h, b = request(port, "PUT", "/raw/chunked.bin", {"Transfer-Encoding": "chunked"}, b"5\r\nhello\r\n0\r\n\r\n")
    result("PUT /raw/:name chunked", st == 201 and json.loads(b) == {"bytes": 5} and saved(updir, "chunked.bin") == b"hello")
    # replaced only once whole: an abandoned upload leaves the old file, and no temporary file
    st, h, b = request(port, "PUT", "/raw/keep.bin", body=b"old")
    before = set(n for n in os.listdir(updir) if n.startswith("up-"))
    s = connect(port)
    s.sendall(b"PUT /raw/keep.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
    time.sleep(0.1)
    s.close()
    left = ["?"]
    for _ in range(40):
        left = [n for n in os.listdir(updir) if n.startswith("up-") and n not in before]
        if not left:
            break
        time.sleep(0.05)
    kept = saved(updir, "keep.bin") if os.path.exists(os.path.join(updir, "keep.bin")) else None
    result("PUT /raw/:name abandoned halfway: the old file is kept, the partial one removed",
           st == 201 and kept == b"old" and not left, "%d %r %r" % (st, kept, left))
    names = {".hidden": 400, "a%2Fb": 400, "..": 404, "%2e%2e": 404, "a%5Cb": 400, "x%00": 400}
    bad = []
    for n, want in names.items():
        st, h, b = request(port, "PUT", "/raw/" + n, body=b"x")
        if st != want:
            bad.append("%s -> %d" % (n, st))
    result("PUT /raw/:name refuses '/', '\\', NUL, a leading '.', dot segments", not bad, "; ".join(bad))
    result("nothing was written outside UPLOAD_DIR", not os.path.exists(os.path.join(os.path.dirname(updir), "b")))
    os.mkdir(os.path.join(updir, "adir"))
    temps = set(x for x in os.listdir(updir) if x.startswith("up-"))
    st, h, b = request(port, "PUT", "/raw/adir", body=b"x" * 1000)
    new_temps = set(x for x in os.listdir(updir) if x.startswith("up-")) - temps
    result("PUT /raw/:name onto a directory's name: 409 before the body, the directory left as it was",
           st == 409 and b"not a file" in b and os.path.isdir(os.path.join(updir, "adir")) and not new_temps,
           "%d %r %r" % (st, b[:80], new_temps))
    os.rmdir(os.path.join(updir, "adir"))


def test_continue(port, rest_port):
    s = connect(port)
    s.sendall(b"PUT /raw/.bad HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
    st, h, b, _ = read_response(s)
    s.close()
    result("Expect: 100-continue refused by the handler: 400 first, no 100", st == 400)
    s = connect(port)
    s.sendall(b"PUT /nowhere HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n")
    st, h, b, _ = read_response(s)
    s.close()
    result("Expect: 100-continue to no route: 404 first, no 100", st == 404)
    s = connect(port)
    s.sendall(b"PUT /raw/cont.bin HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    st1, _, _, rest = read_response(s)
    s.sendall(b"hello")
    st2, h, b, _ = read_response(s, buf=rest)
    s.close()
    result("Expect: 100-continue accepted: 100, then the body, then 201", st1 == 100 and st2 == 201)
    if rest_port:
        s = connect(rest_port)
        s.sendall(b"POST /api/v1/todos HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 20\r\n\r\n")
        st, h, b, _ = read_response(s)
        s.close()
        result("issue 9 bug 3: bearer auth's 401 goes out before the body, no 100 first", st == 401, str(st))
        s = connect(rest_port)
        s.sendall(b"POST /api/v1/todos HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nAuthorization: Bearer secret\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 27\r\n\r\n")
        st1, _, _, rest = read_response(s)
        s.sendall(b'{"title":"a","done":false}\n')
        st2, _, b, _ = read_response(s, buf=rest)
        s.close()
        result("with the token: 100 Continue, then the todo is created", st1 == 100 and st2 == 201, "%d %d %r" % (st1, st2, b))
        # the middleware runs once for an Expect: 100-continue request: the
        # rate limiter (RATE_LIMIT=10) counts it once, and its headers stay
        auth = {"Authorization": "Bearer secret"}
        _, ha, _ = request(rest_port, "GET", "/api/v1/todos", auth)
        s = connect(rest_port)
        s.sendall(b"POST /api/v1/todos HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nAuthorization: Bearer secret\r\n"
                  b"Content-Type: application/json\r\nContent-Length: 27\r\n\r\n")
        st1, _, _, rest = read_response(s)
        s.sendall(b'{"title":"b","done":false}\n')
        st2, hb, _, _ = read_response(s, buf=rest)
        s.close()
        _, hc, _ = request(rest_port, "GET", "/api/v1/todos", auth)
        try:
            a, b2, c = (int(x.get("x-ratelimit-remaining", "-99")) for x in (ha, hb, hc))
        except ValueError:
            a = b2 = c = -99
        result("Expect: 100-continue: the middleware runs once (rate limit counted once, its headers kept)",
               st1 == 100 and st2 == 201 and a - b2 == 1 and b2 - c == 1 and "x-request-id" in hb,
               "%d %d remaining %d %d %d" % (st1, st2, a, b2, c))


def test_big(srv, root, updir, mb, rss_limit_mb):
    port = srv.port
    size = mb << 20
    block = bytes(random.Random(3).getrandbits(8) for _ in range(1 << 16))
    h = hashlib.sha256()
    s = connect(port, timeout=120)
    s.sendall(b"PUT /raw/big-up.bin HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
    view = memoryview(block * 16)
    sent = 0
    t0 = time.time()
    while sent < size:
        n = min(len(view), size - sent)
        s.sendall(view[:n])
        h.update(view[:n])
        sent += n
    st, _, b, _ = read_response(s)
    s.close()
    up_s = time.time() - t0
    ok = st == 201 and json.loads(b) == {"bytes": size} and os.path.getsize(os.path.join(updir, "big-up.bin")) == size
    rss_up = srv.rss_kb()
    result("a %d MiB upload streamed to disk (%.1f s, %.0f MB/s)" % (mb, up_s, mb / max(up_s, 1e-6)), ok, "%d %r" % (st, b))
    os.replace(os.path.join(updir, "big-up.bin"), os.path.join(root, "big-down.bin"))
    s = connect(port, timeout=120)
    s.sendall(b"GET /static/big-down.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    got = 0
    h2 = hashlib.sha256()
    buf = b""
    t0 = time.time()
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, buf = buf.split(b"\r\n\r\n", 1)
    h2.update(buf)
    got = len(buf)
    while True:
        c = s.recv(1 << 20)
        if not c:
            break
        h2.update(c)
        got += len(c)
    s.close()
    down_s = time.time() - t0
    rss = srv.rss_kb()
    result("a %d MiB download through sendfile (%.1f s, %.0f MB/s), bytes intact" % (mb, down_s, mb / max(down_s, 1e-6)),
           head.startswith(b"HTTP/1.1 200") and got == size and h2.digest() == h.digest(), "%d of %d" % (got, size))
    print("# server peak RSS (VmHWM) after the %d MiB upload: %.1f MiB; after the download: %.1f MiB"
          % (mb, rss_up / 1024.0, rss / 1024.0))
    result("peak RSS stays under %d MiB through both" % rss_limit_mb, 0 < rss < rss_limit_mb * 1024, "%d KiB" % rss)
    os.unlink(os.path.join(root, "big-down.bin"))


def test_later(port, files):
    """A file on a deferred response (GET /later/:name, answered from a timer)."""
    data = files["a.txt"]
    st, h, b = request(port, "GET", "/later/a.txt")
    _, hs, _ = request(port, "GET", "/static/a.txt")
    result("deferred file: 200, the bytes, the same validators and type as /static",
           st == 200 and b == data and h.get("etag") == hs.get("etag") and h.get("last-modified") == hs.get("last-modified")
           and h.get("content-type") == hs.get("content-type") and h.get("accept-ranges") == "bytes", "%d %r" % (st, h))
    st, h, b = request(port, "HEAD", "/later/a.txt")
    result("deferred file, HEAD: the head only", st == 200 and b == b"" and h.get("content-length") == "100")
    st, h, b = request(port, "GET", "/later/a.txt", {"If-None-Match": hs["etag"]})
    result("deferred file: If-None-Match kept through the deferral, 304", st == 304 and b == b"", str(st))
    st, h, b = request(port, "GET", "/later/a.txt", {"Range": "bytes=10-19"})
    result("deferred file: Range kept, 206", st == 206 and b == data[10:20] and h.get("content-range") == "bytes 10-19/100",
           "%d %r" % (st, h))
    st, h, b = request(port, "GET", "/later/a.txt", {"Range": "bytes=10-19", "If-Range": '"stale"'})
    result("deferred file: a stale If-Range, 200", st == 200 and b == data)
    big = open(os.path.join(ROOT, "big.bin"), "rb").read()
    st, h, b = request(port, "GET", "/later/big.bin")
    result("deferred file: 4 MiB through sendfile, intact", st == 200 and b == big, "%d %d" % (st, len(b)))
    out = raw(port, b"GET /later/a.txt HTTP/1.1\r\nHost: x\r\n\r\nGET /static/app.js HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /later/data.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    i1, i2, i3 = out.find(data), out.find(files["app.js"]), out.find(files["data.json"])
    result("deferred files pipelined around a static one: in order", out.count(b"HTTP/1.1 200") == 3 and 0 < i1 < i2 < i3,
           repr(out[-300:]))
    st, h, b = request(port, "GET", "/later/escape")
    result("deferred file: a symlink is refused (404), nothing outside the root", st == 404 and SECRET not in b, str(st))


def test_pause(srv, updir):
    """A stream consumer that pauses (CH_BODY_PAUSE) stops the server reading:
    the client can only fill the kernel's buffers meanwhile; after the resume
    the whole body arrives and is answered."""
    size = 64 << 20
    block = b"p" * (1 << 16)

    def sent_within(path, seconds):
        s = connect(srv.port)
        s.sendall(b"PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path.encode(), size))
        s.setblocking(False)
        sent, t_end = 0, time.time() + seconds
        while sent < size and time.time() < t_end:
            try:
                sent += s.send(block[:min(len(block), size - sent)])
            except BlockingIOError:
                time.sleep(0.005)
        return s, sent

    s, paused_sent = sent_within("/slow/paused.bin?pause=1500", 0.7)
    rss_paused = srv.rss_kb("VmRSS")
    s.settimeout(30 * SLOW)
    view = memoryview(block * 16)
    sent = paused_sent
    while sent < size:
        n = min(len(view), size - sent)
        s.sendall(view[:n])
        sent += n
    st, _, b, _ = read_response(s)
    s.close()
    ok = st == 201 and json.loads(b) == {"bytes": size} and os.path.getsize(os.path.join(updir, "paused.bin")) == size
    s2, free_sent = sent_within("/raw/unpaused.bin", 0.7)
    s2.close()
    result("a paused body consumer stops the reads: %.1f MiB taken in 0.7 s paused (%.1f MiB not paused), "
           "server RSS %.1f MiB; then all %d MiB, 201" % (paused_sent / 1048576.0, free_sent / 1048576.0,
                                                         rss_paused / 1024.0, size >> 20),
           ok and paused_sent < 24 << 20 and free_sent > paused_sent and rss_paused < 64 * 1024,
           "%d %r" % (st, b[:100]))
    os.unlink(os.path.join(updir, "paused.bin"))


def test_file_cache(port, root):
    """The open-file cache sees a removed, replaced or rewritten file within a second
    (nginx's open_file_cache_valid 1s); until then only the old inode, never another file."""
    p = os.path.join(root, "cached.txt")
    with open(p, "wb") as f:
        f.write(b"one")
    st1, _, b1 = request(port, "GET", "/static/cached.txt")
    st1b, _, b1b = request(port, "GET", "/static/cached.txt")
    os.unlink(p)
    st2a, _, b2a = request(port, "GET", "/static/cached.txt")  # within the second: the old inode, or 404
    time.sleep(1.1)
    st2, _, _ = request(port, "GET", "/static/cached.txt")
    result("open-file cache: a removed file is 404 within a second", st1 == 200 and b1 == b"one" and st1b == 200 and
           b1b == b"one" and ((st2a == 200 and b2a == b"one") or st2a == 404) and st2 == 404,
           "%d %d %d %d" % (st1, st1b, st2a, st2))
    with open(p, "wb") as f:
        f.write(b"two!")
    time.sleep(1.1)
    st3, _, b3 = request(port, "GET", "/static/cached.txt")
    os.rename(os.path.join(root, "a.txt"), p + ".tmp")
    os.rename(p + ".tmp", p)  # replaced by another file (another inode) of the same name
    st4a, _, b4a = request(port, "GET", "/static/cached.txt")  # within the second: old or new
    time.sleep(1.1)
    st4, _, b4 = request(port, "GET", "/static/cached.txt")
    os.rename(p, os.path.join(root, "a.txt"))
    result("open-file cache: a file created again, then replaced by rename, each seen within a second",
           st3 == 200 and b3 == b"two!" and st4a == 200 and b4a in (b"two!", b"0123456789" * 10) and
           st4 == 200 and b4 == b"0123456789" * 10, "%d %r %d %r %d %r" % (st3, b3, st4a, b4a[:20], st4, b4[:20]))
    # the same inode rewritten in place (same name, new size and mtime): seen after a second
    q = os.path.join(root, "inplace.txt")
    with open(q, "wb") as f:
        f.write(b"first")
    st7, h7, b7 = request(port, "GET", "/static/inplace.txt")
    with open(q, "wb") as f:
        f.write(b"second version")
    time.sleep(1.1)
    st8, h8, b8 = request(port, "GET", "/static/inplace.txt")
    os.unlink(q)
    result("open-file cache: a file rewritten in place is seen after a second (new bytes, new ETag)",
           st7 == 200 and b7 == b"first" and st8 == 200 and b8 == b"second version" and
           h7.get("etag") != h8.get("etag"), "%d %r %d %r" % (st7, b7, st8, b8))
    st5, h5, b5 = request(port, "GET", "/static/app.js", {"Accept-Encoding": "gzip"})
    with open(os.path.join(root, "app.js.gz"), "wb") as f:
        f.write(b"GZ-APP")
    time.sleep(1.1)
    st6, h6, b6 = request(port, "GET", "/static/app.js", {"Accept-Encoding": "gzip"})
    os.unlink(os.path.join(root, "app.js.gz"))
    result("open-file cache: a new .gz sibling is served within a second",
           st5 == 200 and "content-encoding" not in h5 and st6 == 200 and b6 == b"GZ-APP"
           and h6.get("content-encoding") == "gzip", "%d %r %d %r" % (st5, h5, st6, h6))


def stop_traced(p):
    """Stops a server run under `strace -o FILE PROG`: strace blocks fatal
    signals in that mode (its -I 3 default), so SIGTERM goes to the server
    itself (strace's child); strace exits with it."""
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == p.pid:
                        kids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    for k in kids:
        try:
            os.kill(k, signal.SIGTERM)
        except OSError:
            pass
    try:
        p.wait(10)
    except subprocess.TimeoutExpired:
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except OSError:
                pass
        p.kill()
        p.wait()


def test_sigpipe_once(binary, root, updir, cache=True):
    """A worker blocks SIGPIPE once at its start: no mask calls per file.
    With the open-file cache, 20 answers of one file open it once."""
    if not shutil.which("strace") or os.environ.get("FILES_VALGRIND") == "1":
        print("# skipped: system calls per file (no strace, or the server runs under valgrind)")
        return
    port = free_port()
    log = os.path.join(os.path.dirname(root), "strace.log")
    env = dict(os.environ, PORT=str(port), HOST="127.0.0.1", CHOPIN_WORKERS="1", ROOT=root, UPLOAD_DIR=updir)
    if not cache:
        env["FILE_CACHE"] = "off"
    p = subprocess.Popen(["strace", "-f", "-qq", "-e", "trace=rt_sigprocmask,sendfile,openat,openat2,newfstatat,close",
                          "-o", log, binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        httptest.wait_listening(port, p, timeout=10)
        time.sleep(0.2)
        with open(log) as f:
            before = f.read()
        masks_before = before.count("rt_sigprocmask(")
        opens_before = before.count("openat(") + before.count("openat2(")
        s = connect(port)
        for _ in range(20):
            s.sendall(b"GET /static/a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            st, _, _, _ = read_response(s)
        s.close()
        time.sleep(0.2)
        with open(log) as f:
            text = f.read()
    finally:
        stop_traced(p)
    files, masks = text.count("sendfile("), text.count("rt_sigprocmask(") - masks_before
    opens = text.count("openat(") + text.count("openat2(") - opens_before
    stats = text.count("newfstatat(") - before.count("newfstatat(")
    if cache:
        result("20 files sent: %d sendfile calls, %d SIGPIPE mask calls (blocked once per worker)" % (files, masks),
               files >= 20 and masks == 0, text[-1500:])
        # the file, its .br and .gz siblings: each opened (or found absent) once
        result("open-file cache: 20 answers of one file, %d opens (file + 2 absent siblings)" % opens,
               files >= 20 and opens <= 3 * 2, text[-1500:])
        # checked at most once a second, not before each use (the 20 answers take well under 2 s)
        result("open-file cache: 20 answers of one file, %d path stats (at most one per second)" % stats,
               files >= 20 and stats <= 3 * 3, text[-1500:])
    else:
        result("FILE_CACHE=off: 20 answers of one file, %d opens (file + 2 siblings each time)" % opens,
               files >= 20 and opens >= 20 * 3, text[-1500:])


ROOT = ""


def fd_count(srv):
    return len(os.listdir("/proc/%d/fd" % srv.proc.pid))


def settled_fds(srv, at_most=None, seconds=3.0):
    """The server's open descriptors once its closes are done: polled until
    at most `at_most` (or two equal readings), within `seconds`."""
    end = time.time() + seconds * SLOW
    last = fd_count(srv)
    while time.time() < end:
        time.sleep(0.05)
        n = fd_count(srv)
        if (at_most is not None and n <= at_most) or (at_most is None and n == last):
            return n
        last = n
    return last


def test_empty_stream_bodies(srv, updir):
    """A stream route's request without a body (Content-Length: 0, or no
    framing at all) is an empty stream: on_end runs (PUT /raw answers 201
    {"bytes":0} from it and renames the file into place; POST /upload's
    multipart check answers 400), as the chunked empty body does, and
    nothing the handler opened is left behind."""
    port = srv.port
    for label, extra in (("Content-Length: 0", {"Content-Length": "0"}), ("no body framing", {})):
        name = "empty-%s.txt" % ("cl0" if extra else "none")
        st, h, b = request(port, "PUT", "/raw/" + name, extra)
        path = os.path.join(updir, name)
        ok = st == 201 and json.loads(b or b"null") == {"bytes": 0} and os.path.isfile(path) and \
            os.path.getsize(path) == 0
        result("PUT /raw/:name, %s: 201 {\"bytes\":0}, the empty file created" % label, ok, "%d %r" % (st, b))
        ct = {"Content-Type": "multipart/form-data; boundary=XbOuNdArY"}
        ct.update(extra)
        st, h, b = request(port, "POST", "/upload", ct)
        try:
            j = json.loads(b)
        except ValueError:
            j = {}
        result("POST /upload, %s: 400 with the reason" % label,
               st == 400 and "final boundary" in j.get("detail", ""), "%d %r" % (st, b))
    st, h, b = request(port, "PUT", "/raw/empty-chunked.txt", {"Transfer-Encoding": "chunked"}, b"0\r\n\r\n")
    result("PUT /raw/:name, chunked empty body: the same 201 {\"bytes\":0}", st == 201 and
           json.loads(b or b"null") == {"bytes": 0}, "%d %r" % (st, b))
    # kept alive: the answers come in order and the connection serves the next request
    s = connect(port)
    s.sendall(b"PUT /raw/ka1.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
              b"PUT /raw/ka2.txt HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /static/a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    got, rest = [], b""
    for _ in range(3):
        st, hd, b, rest = read_response(s, buf=rest)
        got.append(st)
    s.close()
    result("two empty PUTs and a GET pipelined on one connection: 201, 201, 200", got == [201, 201, 200], repr(got))
    # nothing leaks: descriptors and temporary files as before N empty requests
    n = 25
    before_tmp = set(x for x in os.listdir(updir) if x.startswith("up-"))
    before = settled_fds(srv)
    bad = 0
    for i in range(n):
        st, h, b = request(port, "PUT", "/raw/leak.txt", {"Content-Length": "0", "Connection": "close"})
        bad += st != 201
        st, h, b = request(port, "POST", "/upload", {"Content-Type": "multipart/form-data; boundary=XbOuNdArY",
                                                      "Connection": "close"})
        bad += st != 400
    after = settled_fds(srv, at_most=before)
    left = [x for x in os.listdir(updir) if x.startswith("up-") and x not in before_tmp]
    result("%d empty PUTs and %d empty uploads: every answer right, the server's descriptors %d before, %d after, "
           "no temporary file left" % (n, n, before, after), bad == 0 and after <= before and not left,
           "%d wrong answers; %d temporary files" % (bad, len(left)))


def wait_date_past(port, path, lm, limit=4.0):
    """Waits (at most `limit` s) until the server's Date is past `lm`, the
    Last-Modified of `path`: that date is then a strong validator (RFC 9110
    8.8.2.2). Returns whether it came."""
    import email.utils
    t_lm = email.utils.parsedate_to_datetime(lm)
    end = time.time() + limit * SLOW
    while time.time() < end:
        _, h, _ = request(port, "HEAD", path)
        if email.utils.parsedate_to_datetime(h["date"]) > t_lm:
            return True
        time.sleep(0.1)
    return False


def test_rfc9110_audit(port, root):
    """Three RFC 9110 points an audit found: several ranges none of which is
    satisfiable (416, 14.2), If-Range with a Last-Modified of the response's
    own second (weak, so no 206: 13.1.5, 8.8.2.2), a file named with a
    trailing slash (404: a file is not a directory)."""
    import email.utils
    alpha = b"abcdefghijklmnopqrstuvwxyz"
    with open(os.path.join(root, "s4_alpha.txt"), "wb") as f:
        f.write(alpha)
    # 2020-01-01, an old (strong) date, and a Wednesday: "Wed, ..." is a date, not a W/ tag
    os.utime(os.path.join(root, "s4_alpha.txt"), (1577836800, 1577836800))
    os.makedirs(os.path.join(root, "s4dir"))
    with open(os.path.join(root, "s4dir", "index.html"), "wb") as f:
        f.write(b"s4 index")
    # 1. Range: unsatisfiable as a whole -> 416 with bytes */26, one range or several
    cases = [
        ("bytes=100-101,200-201", 416), ("bytes=100-101, 200-", 416), ("bytes=-0,26-", 416),
        ("bytes=100-101,,200-201", 416), ("bytes=100-101", 416),
        ("bytes=0-1,200-201", 200), ("bytes=100-101,-3", 200),  # one satisfiable: the whole file, as before
        ("bytes=5-2", 200), ("bytes=100-101,5-2", 200), ("bytes=100-101,abc", 200),  # invalid: ignored
    ]
    for base in ("/static/", "/later/"):
        for rng, want in cases:
            st, h, b = request(port, "GET", base + "s4_alpha.txt", {"Range": rng})
            if want == 416:
                ok = st == 416 and h.get("content-range") == "bytes */26" and alpha not in b
            else:
                ok = st == 200 and b == alpha and "content-range" not in h
            result("%s Range %s on 26 bytes -> %d" % (base, rng, want), ok, "%d %r" % (st, h.get("content-range")))
    st, h, b = request(port, "HEAD", "/static/s4_alpha.txt", {"Range": "bytes=100-101,200-201"})
    result("HEAD with an unsatisfiable Range set: ignored, 200", st == 200 and h.get("content-length") == "26", str(st))
    # 2. If-Range
    _, h0, _ = request(port, "GET", "/static/s4_alpha.txt")
    etag, lm = h0["etag"], h0["last-modified"]
    t = email.utils.parsedate_to_datetime(lm).timestamp()
    for desc, v, want in (("the Last-Modified date", lm, 206),
                          ("a date 1 s after Last-Modified", email.utils.formatdate(t + 1, usegmt=True), 200),
                          ("a date 1 s before Last-Modified", email.utils.formatdate(t - 1, usegmt=True), 200),
                          ("the strong ETag", etag, 206), ("the weak ETag W/" + etag, "W/" + etag, 200)):
        for base in ("/static/", "/later/"):
            st, h, b = request(port, "GET", base + "s4_alpha.txt", {"Range": "bytes=0-4", "If-Range": v})
            ok = st == want and b == (alpha[:5] if want == 206 else alpha)
            result("%s If-Range with %s (old file) -> %d" % (base, desc, want), ok, str(st))
    # a file dated an hour ahead: its Last-Modified is not before the Date, so weak
    fut = os.path.join(root, "s4_future.txt")
    with open(fut, "wb") as f:
        f.write(alpha)
    ahead = time.time() + 3600
    os.utime(fut, (ahead, ahead))
    _, hf, _ = request(port, "GET", "/static/s4_future.txt")
    for base in ("/static/", "/later/"):
        st, h, b = request(port, "GET", base + "s4_future.txt", {"Range": "bytes=0-4", "If-Range": hf["last-modified"]})
        result("%s If-Range with a Last-Modified after the Date: weak, 200 whole" % base, st == 200 and b == alpha, str(st))
        st, h, b = request(port, "GET", base + "s4_future.txt", {"Range": "bytes=0-4", "If-Range": hf["etag"]})
        result("%s If-Range with its strong ETag: 206 whatever the date" % base, st == 206 and b == alpha[:5], str(st))
    # a file written in the second of the response (the audit's case): its
    # Last-Modified is not before the Date (the Date may even lag, read once
    # a tick), so 200; tried at a few phases of the second until one answer
    # came within the file's own second. Once the Date has moved past it,
    # the same If-Range gives 206.
    # A new name each try: a file rewritten in place under the same name
    # would meet the open-file cache's entry for it (its length and
    # validators kept up to a second), and could be cut short under it.
    weak, equal, lmf, fresh_path = [], 0, None, None
    for k, phase in enumerate((0.1, 0.5, 0.3, 0.7, 0.9)):
        while abs(time.time() % 1.0 - phase) > 0.05:
            time.sleep(0.01)
        fresh_path = "/static/s4_fresh%d.txt" % k
        with open(os.path.join(root, "s4_fresh%d.txt" % k), "wb") as f:
            f.write(alpha + str(time.time()).encode())
        _, h, _ = request(port, "HEAD", fresh_path)
        lmf = h.get("last-modified")
        st, h, b = request(port, "GET", fresh_path, {"Range": "bytes=0-4", "If-Range": lmf})
        d = email.utils.parsedate_to_datetime(h["date"])
        if d <= email.utils.parsedate_to_datetime(lmf):
            weak.append((st, b[:26] == alpha, h["date"], lmf))
            equal += h["date"] == lmf
        if equal:
            break
    result("If-Range with a Last-Modified not before the response's Date: weak, 200 whole (RFC 9110 8.8.2.2)",
           len(weak) > 0 and all(st == 200 and whole for st, whole, _, _ in weak), repr(weak))
    came = wait_date_past(port, fresh_path, lmf)
    st, h, b = request(port, "GET", fresh_path, {"Range": "bytes=0-4", "If-Range": lmf})
    result("the same If-Range once the Date is past it: strong, 206", came and st == 206 and b == alpha[:5],
           "%s %d" % (came, st))
    # 3. a trailing slash after a file: 404; after a directory: its index
    for path in ("/static/s4_alpha.txt/", "/static/s4_alpha.txt//", "/static/sub/deep.txt/", "/static/a.txt/",
                 "/later/s4_alpha.txt/"):
        for method in ("GET", "HEAD"):
            st, h, b = request(port, method, path)
            result("%s %s: a file is not a directory, 404" % (method, path), st == 404 and alpha not in b, str(st))
    st, h, b = request(port, "GET", "/static/style.css/", {"Accept-Encoding": "gzip, br"})
    result("GET /static/style.css/ with precompressed siblings: 404", st == 404 and b"VERSION" not in b, str(st))
    st, h, b = request(port, "GET", "/static/s4_alpha.txt/", {"Range": "bytes=0-4"})
    result("GET /static/s4_alpha.txt/ with a Range: 404", st == 404, str(st))
    for path, want in (("/static/s4dir/", b"s4 index"), ("/static/s4dir", b"s4 index"),
                       ("/static/", b"<!doctype html><title>files</title>\n")):
        st, h, b = request(port, "GET", path)
        result("GET %s: a directory's index, 200" % path, st == 200 and b == want, "%d %r" % (st, b[:40]))
    for name in ["s4_alpha.txt", "s4_future.txt", "s4dir/index.html"] + \
            [x for x in os.listdir(root) if x.startswith("s4_fresh")]:
        os.unlink(os.path.join(root, name))
    os.rmdir(os.path.join(root, "s4dir"))


def main():
    global ROOT
    args = sys.argv[1:]
    if not args:
        print(__doc__)
        print("0 passed, 1 failed")
        return 1
    binary = args[0]
    rest = None
    big_mb = int(os.environ.get("FILES_BIG_MB", "1024"))
    rss_limit = int(os.environ.get("FILES_RSS_LIMIT_MB", "64"))
    if "--rest" in args:
        rest = args[args.index("--rest") + 1]
    if "--big-mb" in args:
        big_mb = int(args[args.index("--big-mb") + 1])
    base = tempfile.mkdtemp(prefix="chopin-files-")
    srv = rsrv = None
    try:
        ROOT, files = make_tree(base)
        updir = os.path.join(base, "uploads")  # created by the server
        srv = Server(binary, {"ROOT": ROOT, "UPLOAD_DIR": updir})
        result("UPLOAD_DIR is created at start", os.path.isdir(updir))
        test_static(srv.port, ROOT, files)
        test_mime(srv.port)
        test_ranges(srv.port, files)
        test_conditionals(srv.port)
        test_precompressed(srv.port)
        test_traversal(srv.port, ROOT, base)
        test_pipelining(srv.port, files)
        test_slow_reader_and_leaving(srv, ROOT)
        test_sigpipe_once(binary, ROOT, updir)
        test_sigpipe_once(binary, ROOT, updir, cache=False)
        test_file_cache(srv.port, ROOT)
        test_later(srv.port, files)
        test_rfc9110_audit(srv.port, ROOT)
        test_uploads(srv.port, updir)
        if rest:
            rsrv = Server(rest, {"API_TOKEN": "secret", "RATE_LIMIT": "10"})
        test_continue(srv.port, rsrv.port if rsrv else 0)
        test_pause(srv, updir)
        test_empty_stream_bodies(srv, updir)
        if big_mb > 0:
            test_big(srv, ROOT, updir, big_mb, rss_limit)
        rc, err = srv.stop()
        srv = None
        result("the server stops cleanly on SIGTERM (sanitizers quiet)", rc == 0 and "ERROR" not in err and
               "runtime error" not in err, err[-2000:])
    except Exception as e:  # a crash of the test itself is a failure, not a silence
        import traceback
        traceback.print_exc()
        result("the suite ran to its end", False, repr(e))
    finally:
        for s in (srv, rsrv):
            if s:
                s.stop()
        shutil.rmtree(base, ignore_errors=True)
    return httptest.summary()


if __name__ == "__main__":
    sys.exit(main())
