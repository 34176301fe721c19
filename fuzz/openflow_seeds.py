#!/usr/bin/env python3
"""Records what Debian's ovs-ofctl sends, as seeds for the openflow_decode
fuzz target: a proxy between ovs-ofctl and a running upcalld's OpenFlow
socket that writes each client message to OUT/NAME-S-N (one file a message)
and each whole client stream to OUT/NAME-S-stream (S: the
connection).

    openflow_seeds.py DAEMON_SOCKET OUT NAME -- OVS_OFCTL_ARGS_WITH_{target}
"""
import os
import socket
import subprocess
import sys
import tempfile
import threading


def frames(data):
    out = []
    while len(data) >= 8:
        n = int.from_bytes(data[2:4], "big")
        if n < 8 or n > len(data):
            break
        out.append(data[:n])
        data = data[n:]
    return out


def main():
    daemon, out, name = sys.argv[1:4]
    args = sys.argv[sys.argv.index("--") + 1:]
    os.makedirs(out, exist_ok=True)
    path = os.path.join(tempfile.mkdtemp(), "proxy.sock")
    lst = socket.socket(socket.AF_UNIX)
    lst.bind(path)
    lst.listen(4)
    streams = []

    def serve(c):
        sent = bytearray()
        streams.append(sent)
        d = socket.socket(socket.AF_UNIX)
        d.connect(daemon)

        def back():
            while (b := d.recv(65536)):
                c.sendall(b)
            c.close()

        threading.Thread(target=back, daemon=True).start()
        while (b := c.recv(65536)):
            sent.extend(b)
            d.sendall(b)
        d.shutdown(socket.SHUT_WR)

    def accept():
        # ovs-ofctl may open several connections (add-flows first asks
        # for the table features on one of its own).
        while True:
            c, _ = lst.accept()
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    args = [a.replace("{target}", "unix:" + path) for a in args]
    subprocess.run(["ovs-ofctl"] + args, check=False, timeout=30,
                   stdout=subprocess.DEVNULL)
    for s, sent in enumerate(streams):
        for i, f in enumerate(frames(bytes(sent))):
            with open(os.path.join(out, f"{name}-{s}-{i}"), "wb") as w:
                w.write(f)
        with open(os.path.join(out, f"{name}-{s}-stream"), "wb") as w:
            w.write(sent)


if __name__ == "__main__":
    main()
