"""A client of `evmon daemon`'s control socket for the bench scripts
(churn.py, reexec.py, startup.py, metrics.py, containment.py): one request per
connection, and a pinger thread."""
import json
import socket
import threading
import time


def connect(path, timeout=120):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def request(path, obj, timeout=120):
    """Sends obj on a new connection and returns the decoded reply line."""
    with connect(path, timeout) as s:
        s.sendall(json.dumps(obj).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(1 << 20)
            if not chunk:
                raise EOFError("closed")
            buf += chunk
        return json.loads(buf)


class Pinger(threading.Thread):
    """`ping` after `ping` on one connection, `interval` seconds apart.
    answers: the monotonic time of every answer; rtts: the round trips
    (seconds) of the pings answered while `measuring` is set."""

    def __init__(self, path, interval=0.0, measuring=True, timeout=120):
        super().__init__(daemon=True)
        self.s = connect(path, timeout)
        self.interval = interval
        self.measuring = measuring
        self.stop = False
        self.answers = []
        self.rtts = []
        self.error = None

    def run(self):
        buf = b""
        try:
            while not self.stop:
                t0 = time.monotonic()
                self.s.sendall(b'{"cmd":"ping"}\n')
                while b"\n" not in buf:
                    chunk = self.s.recv(4096)
                    if not chunk:
                        raise EOFError("the ping connection closed")
                    buf += chunk
                buf = buf[buf.index(b"\n") + 1:]
                now = time.monotonic()
                self.answers.append(now)
                if self.measuring:
                    self.rtts.append(now - t0)
                if self.interval:
                    time.sleep(self.interval)
        except Exception as e:  # noqa: BLE001 (reported)
            self.error = repr(e)
