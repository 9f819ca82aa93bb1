"""The etcd workload's client: wait for the member to be healthy, then put k1..k8 one
at a time through etcd's v3 JSON gateway on its unix socket, and acknowledge "put kN"
in $BRINK_MARK (opened, written, closed) once the reply carries the put's revision.

One single-threaded process for all requests, importing only built-in modules and
speaking HTTP/1.1 by hand: the workload runs under strace with stacks (a millisecond or
more per system call), which made etcdctl (a Go client, started per request) slow and
now and then fatal ("walk: cannot initialize libunwind: No such process" when its
threads exit mid-unwind), and http.client's imports alone cost a thousand calls.

usage: put.py SOCKET [WAIT_SECONDS]
"""
import binascii
import os
import socket
import sys
import time


def request(path, method, url, body=b"", timeout=5.0):
    """One HTTP/1.1 request on a new connection to the unix socket: (status, body)."""
    head = (
        f"{method} {url} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(head + body)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    finally:
        s.close()
    text = b"".join(chunks).decode("utf-8", "replace")
    status_line, _, rest = text.partition("\r\n")
    parts = status_line.split(" ")
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    return status, rest.partition("\r\n\r\n")[2]


def b64(s):
    return binascii.b2a_base64(s.encode(), newline=False).decode()


def main():
    sock = sys.argv[1]
    wait = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    mark = os.environ["BRINK_MARK"]
    deadline = time.monotonic() + wait
    while True:
        try:
            status, text = request(sock, "GET", "/health", timeout=2.0)
            if status == 200 and '"health":"true"' in text:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            sys.exit("etcd did not become healthy")
        time.sleep(0.1)
    for i in range(1, 9):
        body = f'{{"key":"{b64(f"k{i}")}","value":"{b64(f"value {i}")}"}}'.encode()
        status, text = request(sock, "POST", "/v3/kv/put", body)
        # Success: {"header":{..."revision":"N"...}}; failure: {"error":...,"code":...}.
        if status != 200 or '"error"' in text or '"revision"' not in text:
            sys.exit(f"put k{i} failed: {status} {text}")
        with open(mark, "w") as f:
            f.write(f"put k{i}\n")


if __name__ == "__main__":
    main()
