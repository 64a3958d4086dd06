"""A line server on one event loop (selectors), for tcpprof's tests: each request line
`WORD ROUNDS` is answered with a checksum of WORD computed ROUNDS times over, by hand, in pure
Python. `checksum` is the CPU-heavy function in the request path; `serve` is the loop.

Usage: python3 checksum_server.py PORT
"""
import selectors
import socket
import sys


def checksum(word, rounds):
    h = 0
    for _ in range(rounds):
        for b in word:
            h = (h * 31 + b) & 0xFFFFFFFF
    return h


def handle(line):
    word, rounds = line.split()
    return b"%d\n" % checksum(word, int(rounds))


def serve(listener):
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    pending = {}
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            if sock is listener:
                conn, _ = listener.accept()
                conn.setblocking(False)
                selector.register(conn, selectors.EVENT_READ)
                pending[conn] = b""
                continue
            data = sock.recv(65536)
            if not data:
                selector.unregister(sock)
                del pending[sock]
                sock.close()
                continue
            pending[sock] += data
            while b"\n" in pending[sock]:
                line, pending[sock] = pending[sock].split(b"\n", 1)
                sock.sendall(handle(line))


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", int(sys.argv[1])))
    listener.listen(128)
    listener.setblocking(False)
    serve(listener)


if __name__ == "__main__":
    main()
