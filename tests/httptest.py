"""httptest.py - what the Python black-box tests share: a tally of named
checks, a server binary started on a free loopback port, connections, and
one HTTP/1.1 response read off a socket the way RFC 9112 frames it.

A test imports it by its own location, so it runs from any directory:

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import httptest
    from httptest import result, free_port, read_response

Every check goes through result(name, ok, why), which prints "ok - name"
or "FAIL - name: why"; summary() prints the last line every test program
ends with, "N passed, N failed", and returns the exit status (1 on a
failure). Nothing here waits without a timeout."""
import os
import signal
import socket
import subprocess
import tempfile
import time

LOOPBACK = "127.0.0.1"

passed = 0
failed = 0


def result(name, ok, why=""):
    """Counts one check and prints it; `why` is shown when it failed."""
    global passed, failed
    if ok:
        passed += 1
        print("ok - " + name)
    else:
        failed += 1
        print("FAIL - " + name + ((": " + why) if why else ""))


def summary():
    """Prints "N passed, N failed" (the line tests/run.sh adds up); returns
    the exit status, 1 if any check failed."""
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


def free_port():
    """A loopback port free now: the kernel picks one for a socket bound to
    port 0, which is closed again. (Another process could take it before
    the server binds it; on a test machine that does not happen.)"""
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def connect(port, timeout=5):
    """A connection to the loopback port, each recv bounded by `timeout`
    seconds, with Nagle's delay off so small requests go at once."""
    s = socket.create_connection((LOOPBACK, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def wait_listening(port, proc=None, timeout=10.0, every=0.05):
    """Connects to the port until it accepts (True) or `timeout` seconds
    pass or the process `proc` (a Popen, if given) exits (False)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return True
        except OSError:
            if proc is not None and proc.poll() is not None:
                return False
            time.sleep(every)
    return False


class Server:
    """A server binary run with PORT (a free one) and HOST=127.0.0.1 in its
    environment, ready once it accepts a connection. `env` adds to this
    process's environment; a value of None removes the name. Its stderr goes
    to a temporary file (stderr_text() reads it), never a pipe: a chatty
    server (a sanitizer's or valgrind's report) must not block on a pipe
    nobody reads; or, with own_stderr=False, to this process's stderr."""

    def __init__(self, cmd, env=None, start_timeout=10.0, own_stderr=True):
        self.port = free_port()
        self.termed = False  # SIGTERM sent already: stop() must not send a second
        e = dict(os.environ)
        for k, v in (env or {}).items():
            if v is None:
                e.pop(k, None)
            else:
                e[k] = v
        e["PORT"] = str(self.port)
        e["HOST"] = LOOPBACK
        self.err = tempfile.TemporaryFile() if own_stderr else None
        self.proc = subprocess.Popen(cmd, env=e, stdout=subprocess.DEVNULL, stderr=self.err)
        if not wait_listening(self.port, self.proc, start_timeout):
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            raise RuntimeError("server did not start: " + self.stderr_text())

    def connect(self, timeout=5):
        return connect(self.port, timeout)

    def stderr_text(self):
        if self.err is None:
            return ""
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def proc_status(self, field):
        """A field of /proc/PID/status in KiB (VmRSS: resident now, VmHWM:
        its peak), or -1."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return -1

    def sigterm(self):
        """Asks the server to stop (a graceful drain) without waiting."""
        self.proc.send_signal(signal.SIGTERM)
        self.termed = True

    def stop(self, timeout=20):
        """SIGTERM (unless sent already), then waits up to `timeout` seconds
        (then SIGKILL); returns (exit status, stderr text)."""
        if self.proc.poll() is None and not self.termed:
            self.sigterm()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        text = self.stderr_text()
        if self.err is not None:
            self.err.close()
        return self.proc.returncode, text


def recv_until(s, marker=None, limit=5.0):
    """What socket s receives until `marker` (bytes) is in it (never, if
    None), the server closes, or `limit` seconds pass: whatever came."""
    buf = b""
    end = time.time() + limit
    while (marker is None or marker not in buf) and time.time() < end:
        s.settimeout(max(0.01, end - time.time()))
        try:
            data = s.recv(65536)
        except socket.timeout:
            break
        if not data:
            break
        buf += data
    return buf


class Response:
    """One response: status (int), version ("HTTP/1.1"), head (the status
    line and header lines as text), headers (names lower-cased; a repeated
    name keeps its last value), body (bytes), chunks (the chunked body's
    pieces, as sent)."""

    def __init__(self, head):
        self.head = head
        lines = head.split("\r\n")
        self.version = lines[0].split()[0]
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self.chunks = []
        self.body = b""


def read_response(s, buf=b"", head_only=False, limit=None):
    """Reads one response from socket s; `buf` holds bytes already read
    (what a previous call returned after its response: pipelining). Returns
    (Response, the bytes read past it). The body is framed as RFC 9112 says:
    none after a 1xx, 204 or 304 or for a HEAD request (head_only); else
    Content-Length bytes; else the chunks of Transfer-Encoding: chunked; else
    everything until the server closes. `limit`: seconds for the whole
    response (else each recv waits as long as the socket's own timeout).
    A close before the response is whole raises EOFError."""
    end = None if limit is None else time.time() + limit

    def more():
        if end is not None:
            s.settimeout(max(0.01, end - time.time()))
        data = s.recv(1 << 20)
        if not data:
            raise EOFError("closed %s (%d bytes in hand)" % ("in a body" if r else "before a head", len(buf)))
        return data

    r = None
    while b"\r\n\r\n" not in buf:
        buf += more()
    head, buf = buf.split(b"\r\n\r\n", 1)
    r = Response(head.decode("latin-1"))
    if head_only or r.status < 200 or r.status in (204, 304):
        return r, buf
    if "content-length" in r.headers:
        n = int(r.headers["content-length"])
        while len(buf) < n:
            buf += more()
        r.body, buf = buf[:n], buf[n:]
    elif r.headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            while b"\r\n" not in buf:
                buf += more()
            line, buf = buf.split(b"\r\n", 1)
            n = int(line.split(b";")[0], 16)
            if n == 0:  # the last chunk; then trailer lines up to an empty one
                while not buf.startswith(b"\r\n") and b"\r\n\r\n" not in buf:
                    buf += more()
                buf = buf[2:] if buf.startswith(b"\r\n") else buf.split(b"\r\n\r\n", 1)[1]
                break
            while len(buf) < n + 2:
                buf += more()
            if buf[n:n + 2] != b"\r\n":
                raise ValueError("a chunk does not end in CRLF")
            r.chunks.append(buf[:n])
            r.body += buf[:n]
            buf = buf[n + 2:]
    else:  # delimited by the close
        try:
            while True:
                buf += more()
        except EOFError:
            pass
        r.body, buf = buf, b""
    return r, buf
