"""A throwaway PostgreSQL server for tests and benchmarks: initdb into a temp folder, serve on a
loopback port (and a Unix socket in that folder), remove everything at the end.

initdb and postgres refuse to run as root; CI runs as root, so there both run as ``nobody`` (through
``setpriv``, which execs the program itself: the Popen handle is the postmaster) in a folder that
user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from server_process import free_port


def find_bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin holding initdb and postgres (or the ones on PATH)."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for folder in candidates:
        if Path(folder, "initdb").exists() and Path(folder, "postgres").exists():
            return Path(folder)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("postgres") else None


class PostgresServer:
    def __init__(self, bin_dir: Path, *, durable: bool = False):
        self.bin_dir = bin_dir
        self.durable = durable  # fsync on (benchmarks); tests need no durability and the disk is shared
        self.root = Path(tempfile.mkdtemp(prefix="thorgen-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql://thorgen@127.0.0.1:{self.port}/postgres"
        self.proc: subprocess.Popen[bytes] | None = None
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("nobody")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                            "--reset-env"]

    def init(self) -> PostgresServer:
        subprocess.run([*self._prefix, str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "thorgen",
                        "--auth=trust", "--encoding=UTF8", "--no-sync"],
                       check=True, capture_output=True, cwd=self.root)
        return self

    def start(self, timeout: float = 30.0) -> PostgresServer:
        log = (self.root / "postgres.log").open("ab")
        sync = ["-c", "fsync=on", "-c", "synchronous_commit=on"] if self.durable else [
            "-c", "fsync=off", "-c", "synchronous_commit=off"]
        self.proc = subprocess.Popen(
            [*self._prefix, str(self.bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.root}",
             *sync, "-c", "max_connections=100"],
            stdout=log, stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.log()}")
            if self._accepts():
                return self
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections within {timeout} s:\n{self.log()}")

    def _accepts(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def stop(self) -> None:
        """A fast shutdown (SIGINT): clients are disconnected, as in a restart of the service."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace") if path.exists() else ""
