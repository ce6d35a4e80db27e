#!/usr/bin/env python3
"""sse_fanout.py PORT N PID WORKERS - N clients subscribe (GET /subscribe),
one POST /publish; prints the time until every client has the message and
the server's CPU (user + system, from /proc/PID/stat) in that time. Used by
bench/async.sh (a benchmark, not a test)."""
import os
import resource
import selectors
import socket
import sys
import time

port, n, pid, workers = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
tick = os.sysconf("SC_CLK_TCK")


def cpu():
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / tick


sel = selectors.DefaultSelector()
socks = []
for i in range(n):
    s = socket.socket()
    s.setblocking(True)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /subscribe HTTP/1.1\r\nHost: x\r\n\r\n")
    s.setblocking(False)
    socks.append(s)
    sel.register(s, selectors.EVENT_READ, [b"", False])
# every head in
heads = 0
t = time.time()
while heads < n and time.time() - t < 60:
    for key, _ in sel.select(1):
        st = key.data
        try:
            st[0] += key.fileobj.recv(65536)
        except BlockingIOError:
            continue
        if not st[1] and b"\r\n\r\n" in st[0]:
            st[1] = True
            st[0] = b""
            heads += 1
if heads < n:
    print("   only %d of %d subscribed" % (heads, n))
    sys.exit(1)
time.sleep(0.5)
msg = b"fan-out %d" % n
want = b"data: " + msg + b"\n\n"
c0 = cpu()
t0 = time.time()
p = socket.create_connection(("127.0.0.1", port))
p.sendall(b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(msg), msg))
got = 0
done = set()
while got < n and time.time() - t0 < 60:
    for key, _ in sel.select(1):
        st = key.data
        try:
            st[0] += key.fileobj.recv(65536)
        except BlockingIOError:
            continue
        if key.fileobj not in done and want in st[0]:
            done.add(key.fileobj)
            got += 1
took = time.time() - t0
c1 = cpu()
print("   %s worker(s): %d of %d clients had the message after %.1f ms; server CPU %.1f ms (%.2f us per delivery)"
      % (workers, got, n, took * 1000, (c1 - c0) * 1000, (c1 - c0) * 1e6 / max(got, 1)))
p.close()
for s in socks:
    s.close()
