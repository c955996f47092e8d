"""A private, throw-away redis-server for the tests.

Each server listens on a free loopback port, keeps nothing on disk and is
stopped at teardown; an atexit hook stops any server a crashed test left
behind, so no redis-server outlives the test run.
"""

import atexit
import shutil
import socket
import subprocess
import tempfile
import time

START_TIMEOUT = 5.0

_running = set()


def free_port():
    """A loopback TCP port that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping(port, timeout=0.2):
    """True when a Redis on 127.0.0.1:port answers PING."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    def __init__(self, port=None):
        self.executable = shutil.which("redis-server")
        if self.executable is None:
            raise RuntimeError("redis-server not found; install it (apt-get install redis-server)")
        self.port = port or free_port()
        self.proc = None
        self.workdir = tempfile.mkdtemp(prefix="canal-redis-")

    @property
    def url(self):
        return "redis://127.0.0.1:%d/0" % self.port

    def start(self):
        """Start on self.port (again, after stop()) and wait until PING answers."""
        if self.proc is not None:
            raise RuntimeError("redis-server already running on port %d" % self.port)
        log = open("%s/redis.log" % self.workdir, "ab")
        self.proc = subprocess.Popen(
            [
                self.executable,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--dir", self.workdir,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        _running.add(self)
        deadline = time.monotonic() + START_TIMEOUT
        while not ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open("%s/redis.log" % self.workdir, errors="replace") as f:
                    tail = f.read()[-2000:]
                raise RuntimeError(
                    "redis-server did not answer PING on port %d within %.0f s:\n%s"
                    % (self.port, START_TIMEOUT, tail)
                )
            time.sleep(0.02)
        return self

    def stop(self, kill=False):
        """Stop the server; kill=True is a crash (SIGKILL), not a shutdown."""
        proc, self.proc = self.proc, None
        _running.discard(self)
        if proc is None or proc.poll() is not None:
            return
        if kill:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def client(self, db=0, **kwargs):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5, **kwargs)


@atexit.register
def _stop_all():
    for server in list(_running):
        server.close()
