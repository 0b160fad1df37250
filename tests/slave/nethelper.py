"""Tiny network programs for the nftables tests, run as a member's Unix user (standalone:
only the standard library, so the system python3 runs it as any user).

    serve PROTO:PORT[@ADDR] ...     listen (ADDR with a colon: IPv6 only) (tcp: accept and send "ok"; udp: echo "ok"),
                                    print "ready" once every socket is bound
    connect PROTO HOST PORT [SRC] [TIMEOUT] [SOURCE_PORT]
                                    print "ok" if the service answered, else "fail: why"
    blast HOST PORT SECONDS         send UDP datagrams of 1000 bytes for SECONDS; print
                                    the bytes sendto() accepted
"""

import socket
import sys
import threading
import time


def serve(specs):
    socks = []
    for spec in specs:
        proto, _, rest = spec.partition(":")
        port, _, addr = rest.partition("@")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        s = socket.socket(family, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr or "0.0.0.0", int(port)))
        if proto == "tcp":
            s.listen(64)
        socks.append((proto, s))
    print("ready", flush=True)

    def tcp(s):
        while True:
            c, _ = s.accept()
            try:
                c.sendall(b"ok")
            except OSError:
                pass
            c.close()

    def udp(s):
        while True:
            data, peer = s.recvfrom(2048)
            try:
                s.sendto(b"ok", peer)
            except OSError:
                pass

    for proto, s in socks:
        threading.Thread(target=tcp if proto == "tcp" else udp, args=(s,), daemon=True).start()
    sys.stdin.read()  # until the test closes our stdin


def connect(proto, host, port, src="", timeout="1.5", sport="0"):
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, kind)
    s.settimeout(float(timeout))
    try:
        if src or sport != "0":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((src, int(sport)))
        s.connect((host, int(port)))
        if proto == "udp":
            s.send(b"hi")
        data = s.recv(16)
        print("ok" if data == b"ok" else f"fail: answered {data!r}")
    except OSError as e:
        print(f"fail: {e}")


def blast(host, port, seconds):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    end, sent = time.monotonic() + float(seconds), 0
    payload = b"x" * 1000
    while time.monotonic() < end:
        try:
            sent += s.sendto(payload, (host, int(port)))
        except OSError:
            time.sleep(0.0005)
    print(sent)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"serve": serve, "connect": connect, "blast": blast}[cmd](*([args] if cmd == "serve" else args))
