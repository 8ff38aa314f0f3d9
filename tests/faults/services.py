"""A Redis and a PostgreSQL of the fault suite's own, on spare ports, in a temporary
directory: the suite kills and restarts them without touching the machine's services."""

import glob
import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.realparts import free_port


def _wait(predicate, *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what}")


class OwnRedis:
    """``redis-server --save ''`` on a spare port: stop and start it as a broker outage."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        log = open(self.workdir / f"redis-{self.port}.log", "a")  # noqa: SIM115 (the child's)
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        _wait(self.ready, timeout=10, what="redis-server")

    def ready(self) -> bool:
        import redis

        try:
            return redis.Redis(port=self.port, socket_timeout=0.5).ping()
        except redis.RedisError:
            return False

    def kill(self) -> None:
        """The broker dies at once (SIGKILL): what it held in memory is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        self.kill()


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return path


class OwnPostgres:
    """A PostgreSQL cluster ``initdb``'d into a temporary directory, on a spare port. As root
    it runs as the ``postgres`` user (PostgreSQL refuses to run as root)."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.datadir = workdir / "pgdata"
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.user = None
        if os.geteuid() == 0:
            self.user = pwd.getpwnam("postgres")

    def _as_owner(self):
        if self.user is None:
            return None
        uid, gid = self.user.pw_uid, self.user.pw_gid

        def demote():
            os.setgid(gid)
            os.setuid(uid)

        return demote

    def url(self, name: str = "faults") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def init(self) -> None:
        self.datadir.mkdir(parents=True)
        if self.user is not None:
            os.chown(self.workdir, self.user.pw_uid, self.user.pw_gid)
            os.chown(self.datadir, self.user.pw_uid, self.user.pw_gid)
        subprocess.run(
            [_postgres_bin("initdb"), "-D", str(self.datadir), "-U", "postgres",
             "--auth=trust", "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, preexec_fn=self._as_owner(),
        )  # fmt: skip

    def start(self) -> None:
        log = open(self.workdir / "postgres.log", "a")  # noqa: SIM115 (the child's)
        self.proc = subprocess.Popen(
            [_postgres_bin("postgres"), "-D", str(self.datadir), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.datadir}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
             "-c", "max_connections=200"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=self._as_owner(), start_new_session=True,
        )  # fmt: skip
        _wait(self.ready, timeout=30, what="postgres")

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"postgres exited: {(self.workdir / 'postgres.log').read_text()}")
        done = subprocess.run(
            [_postgres_bin("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
            capture_output=True,
        )
        return done.returncode == 0

    def sql(self, statement: str, *, database: str = "postgres"):
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            cursor = conn.execute(statement)
            return cursor.fetchall() if cursor.description else None

    def create_database(self, name: str) -> None:
        self.sql(f'CREATE DATABASE "{name}"')

    def drop_connections(self, database: str) -> int:
        """End every session on ``database`` (``pg_terminate_backend``): a failover as the
        portal and the workers see it."""
        rows = self.sql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            f" WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        )
        return rows[0][0]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
