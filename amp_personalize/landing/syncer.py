"""The sync process: group commit's fdatasync, in a process of its own so it never takes the GIL.

A syncer thread in the receiver needs the GIL back after every fdatasync, and a busy event loop
gives it up only when forced: three to four forced switches of the loop thread per sync, which
cost the receiver about a tenth of its single-event throughput (benchmarks/ingest.py). A process
has its own interpreter. It is started by path with the standard library only (`python -I -S`,
no package import, so it is up in milliseconds), and it holds its own descriptor of the open
segment: fdatasync on any descriptor of a file makes that file's written data durable.

One message each way on a SOCK_SEQPACKET socket, one request at a time:

    b"sync" (+ the segment's descriptor when it changed)  ->  b"ok <seconds>" or b"err <errno>"
    b"drop"  (the segment is sealed or cut back: close its descriptor; no reply)

The receiver knows which segment and offset the one request in flight covers. The process ignores SIGINT and SIGTERM, so Ctrl-C on `make up` lets the receiver finish its
in-flight requests, and it exits when the receiver's end of the socket closes, which also
happens when the receiver is killed.
"""

import os
import signal
import socket
import sys
import time


def serve(sock: socket.socket) -> None:
    fd = -1
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(sock, 64, 1)
        except ConnectionResetError:
            return
        if not message:  # the receiver closed its end, or died
            return
        if fds or message == b"drop":
            if fd >= 0:
                os.close(fd)
            fd = fds[0] if fds else -1
        if message == b"drop":
            continue
        started = time.perf_counter()
        try:
            os.fdatasync(fd)
        except OSError as exc:
            reply = b"err %d" % (exc.errno or 0)
        else:
            reply = b"ok %.6f" % (time.perf_counter() - started)
        try:
            sock.send(reply)
        except OSError:  # the receiver is gone
            return


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve(socket.socket(fileno=int(sys.argv[1])))


if __name__ == "__main__":
    main()
