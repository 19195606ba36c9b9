"""A MariaDB instance from Debian's packages, with its own data dir, socket and port under the
project's state folder (so it never fights with a system instance)."""
from __future__ import annotations

import os
import shutil
import subprocess

from rehab.settings import Settings
from rehab.stack.proc import StackError, port_open, read_pid, spawn, stop_pid, wait_until

SERVER_CANDIDATES = ("/usr/sbin/mariadbd", "/usr/sbin/mysqld")


def _find_server() -> str | None:
    for path in SERVER_CANDIDATES:
        if os.access(path, os.X_OK):
            return path
    return shutil.which("mariadbd")


def apt_install(packages: list[str]) -> None:
    """Install Debian packages, or say clearly why that cannot happen here."""
    if shutil.which("apt-get") is None:
        raise StackError(f"{' '.join(packages)} missing and apt-get is not available; install them by hand")
    if os.geteuid() != 0:
        raise StackError(f"{' '.join(packages)} missing; run as root or: sudo apt-get install -y {' '.join(packages)}")
    print(f"installing {' '.join(packages)} with apt-get ...", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise StackError(f"{' '.join(cmd)} failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")


class MariaDB:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.host, self.port = settings.mysql_host, settings.mysql_port
        self.home = settings.state_dir / "mariadb"
        self.data = self.home / "data"
        self.socket = self.home / "mysqld.sock"
        self.log_file = self.home / "mariadb.log"
        self.pid_file = self.home / "mariadb.pid"

    def ensure_installed(self) -> str:
        server = _find_server()
        if server is None:
            apt_install(["mariadb-server", "mariadb-client"])
            server = _find_server()
            if server is None:
                raise StackError("mariadb-server installed but mariadbd not found")
        return server

    def _client(self, sql: str) -> None:
        client = shutil.which("mariadb") or shutil.which("mysql")
        if client is None:
            raise StackError("the mariadb client is missing (apt-get install mariadb-client)")
        proc = subprocess.run(
            [client, "--no-defaults", "-uroot", f"--socket={self.socket}", "-e", sql],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise StackError(f"MariaDB bootstrap SQL failed: {proc.stderr.strip()}")

    def _user_flag(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def running(self) -> bool:
        return read_pid(self.pid_file) is not None

    def up(self) -> str:
        if self.running():
            wait_until(lambda: port_open(self.host, self.port), 60, "MariaDB", self.log_file)
            return f"MariaDB already running on {self.host}:{self.port}"
        if port_open(self.host, self.port):
            raise StackError(
                f"port {self.port} on {self.host} is taken by another program; stop it or set REHAB_MYSQL_PORT"
            )
        server = self.ensure_installed()
        self.home.mkdir(parents=True, exist_ok=True)
        if not (self.data / "mysql").exists():
            install_db = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
            if install_db is None:
                raise StackError("mariadb-install-db is missing (apt-get install mariadb-server)")
            proc = subprocess.run(
                [install_db, "--no-defaults", f"--datadir={self.data}", "--skip-test-db",
                 "--auth-root-authentication-method=socket", *self._user_flag()],
                capture_output=True, text=True,
            )
            if proc.returncode != 0:
                raise StackError(f"mariadb-install-db failed:\n{proc.stdout[-1500:]}{proc.stderr[-1500:]}")
        pid = spawn(
            [server, "--no-defaults", f"--datadir={self.data}", f"--socket={self.socket}",
             f"--port={self.port}", f"--bind-address={self.host}", f"--pid-file={self.home / 'mariadbd.pid'}",
             f"--log-error={self.log_file}", "--innodb-buffer-pool-size=128M", "--max-connections=500",
             "--character-set-server=utf8mb4", "--collation-server=utf8mb4_unicode_ci",
             "--innodb-flush-log-at-trx-commit=2", *self._user_flag()],
            self.home / "mariadbd.stdout.log", self.pid_file,
        )
        wait_until(lambda: port_open(self.host, self.port), 60, "MariaDB", self.log_file, pid)
        user, pw = self.settings.mysql_user, self.settings.mysql_password.replace("'", "''")
        self._client(
            f"CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1' IDENTIFIED BY '{pw}';"
            f"CREATE USER IF NOT EXISTS '{user}'@'localhost' IDENTIFIED BY '{pw}';"
            f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'127.0.0.1';"
            f"GRANT ALL PRIVILEGES ON *.* TO '{user}'@'localhost';"
        )
        return f"MariaDB {self.host}:{self.port} started (log: {self.log_file})"

    def down(self) -> str:
        return "MariaDB stopped" if stop_pid(self.pid_file, timeout=60) else "MariaDB was not running"
