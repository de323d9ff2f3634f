"""Real parts that fail on demand, on loopback only: a TCP proxy that can be cut (a database going away) and
servers that answer slowly or with a gzip bomb. Every one is stopped by the test that starts it (context managers)."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path


class _LoopbackServer:
    """A listening socket on 127.0.0.1 with a thread that hands each connection to `_serve` until closed."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._serve(client)

    def _serve(self, client: socket.socket) -> None:
        raise NotImplementedError


class TcpProxy(_LoopbackServer):
    """Forwards 127.0.0.1:<port> to a target; `cut()` refuses new connections and resets open ones (the database
    host gone), `restore()` brings it back."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._up = threading.Event()
        self._up.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        super().__init__()

    def _serve(self, client: socket.socket) -> None:
        if not self._up.is_set():
            _reset(client)
            return
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            _reset(client)
            return
        with self._lock:
            self._sockets |= {client, upstream}
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _reset(sock)

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reset(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()


class SlowHttpServer(_LoopbackServer):
    """An HTTP server on loopback that sends its answer one byte every `interval` seconds (or a gzip bomb)."""

    def __init__(self, body: bytes, *, interval: float = 0.0, headers_slowly: bool = False,
                 gzip_bomb_bytes: int = 0) -> None:
        self.body, self.interval, self.headers_slowly = body, interval, headers_slowly
        self.gzip_bomb_bytes = gzip_bomb_bytes
        self.requests = 0
        self.open_connections = 0
        self._lock = threading.Lock()
        super().__init__()
        self.url = f"http://127.0.0.1:{self.port}"

    def _serve(self, client: socket.socket) -> None:
        threading.Thread(target=self._answer, args=(client,), daemon=True).start()

    def _answer(self, client: socket.socket) -> None:
        with self._lock:
            self.requests += 1
            self.open_connections += 1
        try:
            client.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = client.recv(4096)
                if not chunk:
                    return
                data += chunk
            body = self.body
            encoding = b""
            if self.gzip_bomb_bytes:
                body = _gzip_of_zeros(self.gzip_bomb_bytes)
                encoding = b"Content-Encoding: gzip\r\n"
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n" + encoding
                    + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
            if self.headers_slowly:
                self._trickle(client, head + body)
            else:
                client.sendall(head)
                self._trickle(client, body)
        except OSError:
            pass
        finally:
            with self._lock:
                self.open_connections -= 1
            with contextlib.suppress(OSError):
                client.close()

    def _trickle(self, client: socket.socket, data: bytes) -> None:
        if not self.interval:
            client.sendall(data)
            return
        for index in range(len(data)):
            if self._closed:
                return
            client.sendall(data[index:index + 1])
            time.sleep(self.interval)

    def close(self) -> None:
        self._closed = True
        self.listener.close()

    def __enter__(self) -> SlowHttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _gzip_of_zeros(size: int) -> bytes:
    """`size` zero bytes, gzipped (about a thousandth of the size): a decompression bomb."""
    out = gzip.compress(b"\0" * min(size, 1 << 20), compresslevel=9)
    if size <= 1 << 20:
        return out
    # Many members of one MiB each: gzip readers concatenate them.
    return out * (size >> 20)


class PostgresCluster:
    """A private PostgreSQL server (initdb in a temporary folder, a free loopback port) that a test may stop and
    start: the real thing going down, without touching the shared test server. Needs PostgreSQL's server binaries;
    as root, the server runs as the `postgres` user."""

    def __init__(self) -> None:
        if not os.environ.get("CDS_TEST_POSTGRES_URL"):
            import pytest  # noqa: PLC0415

            pytest.skip("no PostgreSQL given (CDS_TEST_POSTGRES_URL); .ci/run always gives one, with its binaries")
        self.bin = _postgres_bin()
        self.folder = Path(tempfile.mkdtemp(prefix="cds-pg-"))
        self.data = self.folder / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None
        if self.user:
            shutil.chown(self.folder, self.user)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "cds", "--no-sync", "-E", "UTF8")
        self.start()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://cds@127.0.0.1:{self.port}/postgres"

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin / program), *args]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-t", "30", "-l", str(self.folder / "log"),
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", "-m", "immediate", "stop")

    def close(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _postgres_bin() -> Path:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise FileNotFoundError("PostgreSQL server binaries (initdb) not found")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_command() -> list[str]:
    """`cds-service` of the environment running the tests."""
    script = Path(sys.executable).with_name("cds-service")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cds_service"]


@contextlib.contextmanager
def running(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Stop the process (and its children) however the test ends."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
