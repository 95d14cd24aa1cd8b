"""Real local services for the tests: a throwaway PostgreSQL server, a one-node SLURM cluster, headless Chromium.

Each fixture reuses a service the environment announces (CI starts them: ``.ci/services.sh start``)
or starts its own from the Debian binaries and stops it at the end of the session. Where the
binaries are missing a test skips with a one-line reason, except under ``VBENCH_CI=1``, where it
fails: CI must never pass by skipping them.

Environment read here (and printed by ``python3 tests/services.py start``):

- ``VBENCH_TEST_POSTGRES_URL``  ``postgresql://postgres@127.0.0.1:PORT/postgres``, a superuser
- ``VBENCH_TEST_POSTGRES_DATA`` that server's data directory (lets a test restart it)
- ``SLURM_CONF``                 the slurm.conf of a running cluster
- ``VBENCH_CI``                  ``1``: a missing service fails instead of skipping

Nothing here installs packages: ``apt-get install postgresql slurm-wlm munge chromium chromium-driver``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import importlib.util
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

POSTGRES_SUPERUSER = "postgres"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# --headless=new renders like a desktop Chromium; the rest keeps a fresh profile off the network.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900",
)
STARTED_HERE = "started-by-vbench-tests"  # marker file: `stop` only stops what this module started


class ServiceUnavailable(RuntimeError):
    """The service's binaries (or the rights to start it) are missing on this machine."""


class ServiceError(RuntimeError):
    """The service is installed but did not start or stop as it should."""


def in_ci() -> bool:
    return os.environ.get("VBENCH_CI") == "1"


def service_unavailable(reason: str) -> NoReturn:
    """Skip the test with ``reason`` (one line); under VBENCH_CI=1 fail it instead."""
    if in_ci():
        pytest.fail(f"{reason} (VBENCH_CI=1: services are required)", pytrace=False)
    pytest.skip(reason)


# --- plumbing -------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def as_user(user: str | None) -> list[str]:
    """Command prefix that runs a program as ``user`` (we are root) or as ourselves (``None``)."""
    if user is None or os.geteuid() != 0:
        return []
    return ["runuser", "-u", user, "--"]


def run(command: list, timeout: float = 60, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``command``; a failure raises ServiceError with its output (not a bare CalledProcessError)."""
    try:
        result = subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(f"{shlex.join(map(str, command))} did not finish within {timeout}s") from exc
    if check and result.returncode != 0:
        raise ServiceError(f"{shlex.join(map(str, command))} exited {result.returncode}: {result.stdout}{result.stderr}".strip())
    return result


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ServiceError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def stop_pid_file(pid_file: Path, timeout: float = 20) -> None:
    """SIGTERM the daemon named in ``pid_file`` and wait until it is gone (SIGKILL after ``timeout``)."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        wait_for(lambda: not process_alive(pid), timeout, f"pid {pid} from {pid_file} to exit")
    except ServiceError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def service_tmpdir(prefix: str, owner: str | None = None) -> Path:
    """A new directory under /tmp that ``owner`` can use (pytest's tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    if owner is not None and os.geteuid() == 0:
        shutil.chown(path, user=owner, group=owner)
    return path


# --- PostgreSQL -----------------------------------------------------------------------------------
def postgres_bindir(version: str | None = None) -> Path | None:
    """Debian's server binaries (``/usr/lib/postgresql/VERSION/bin``), the newest version unless one is named."""
    candidates = [path for path in Path("/usr/lib/postgresql").glob("*/bin") if (path / "pg_ctl").exists()]
    if version is not None:
        candidates = [path for path in candidates if path.parent.name == version]
    candidates.sort(key=lambda path: [int(part) for part in re.findall(r"\d+", path.parent.name)])
    return candidates[-1] if candidates else None


@dataclass
class PostgresServer:
    """One PostgreSQL server reached at ``url``; ``start``/``stop``/``restart`` drive it through pg_ctl.

    ``data_dir`` is None for a server known only by its URL: usable, but not stoppable from here.
    """

    url: str
    data_dir: Path | None = None
    bindir: Path | None = None
    user: str | None = None  # the OS user the server runs as (``postgres`` when we are root), None: ourselves

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        if self.data_dir is None or self.bindir is None:
            raise ServiceUnavailable(
                "the PostgreSQL server of VBENCH_TEST_POSTGRES_URL cannot be stopped or restarted here: "
                "set VBENCH_TEST_POSTGRES_DATA to its data directory"
            )
        return run([*as_user(self.user), self.bindir / "pg_ctl", "-D", self.data_dir, *args], timeout=90, check=check)

    def is_running(self) -> bool:
        return self.pg_ctl("status", check=False).returncode == 0

    def start(self) -> None:
        self.pg_ctl("-l", str(self.data_dir.parent / "postgres.log"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions and close every connection)."""
        if self.is_running():
            self.pg_ctl("-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        """Stop and start the same server on the same port: every open connection breaks."""
        self.stop()
        self.start()

    @classmethod
    def create(cls, port: int | None = None, prefix: str = "vbench-postgres-") -> "PostgresServer":
        """initdb a new cluster under a new /tmp directory and start it on 127.0.0.1 (a free port unless given)."""
        bindir = postgres_bindir()
        if bindir is None:
            raise ServiceUnavailable("no PostgreSQL server binaries (apt-get install postgresql)")
        user = "postgres" if os.geteuid() == 0 else None  # the server refuses to run as root
        if user is not None:
            try:
                pwd.getpwnam(user)
            except KeyError:
                raise ServiceUnavailable("running as root but there is no postgres user (apt-get install postgresql)") from None
        root = service_tmpdir(prefix, owner=user)
        port = port or free_port()
        server = cls(f"postgresql://{POSTGRES_SUPERUSER}@127.0.0.1:{port}/postgres", root / "data", bindir, user)
        try:
            run([*as_user(user), bindir / "initdb", "-D", server.data_dir, "-A", "trust", "-U", POSTGRES_SUPERUSER,
                 "-E", "UTF8", "--locale=C", "--no-sync"], timeout=120)
            # Throwaway data: no fsync. The unix socket lives beside the data, not in /run/postgresql.
            settings = {
                "listen_addresses": "'127.0.0.1'", "port": str(port), "unix_socket_directories": f"'{root}'",
                "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "200",
            }
            with open(server.data_dir / "postgresql.conf", "a") as conf:
                conf.write("\n# vbench test server\n" + "".join(f"{key} = {value}\n" for key, value in settings.items()))
            server.start()
        except ServiceError as exc:
            log = root / "postgres.log"
            detail = f"\n--- {log}\n{log.read_text()[-2000:]}" if log.exists() else ""
            shutil.rmtree(root, ignore_errors=True)
            raise ServiceError(f"{exc}{detail}") from None
        (root / STARTED_HERE).touch()
        return server

    def remove(self) -> None:
        """Stop the server at once and delete its directory (only for a server ``create`` made)."""
        root = self.data_dir.parent
        if not (root / STARTED_HERE).exists():
            raise ServiceError(f"the PostgreSQL server in {self.data_dir} was not started by these tests; not removing it")
        with contextlib.suppress(ServiceError):
            self.stop(mode="immediate")
        shutil.rmtree(root, ignore_errors=True)

    @classmethod
    def from_environment(cls) -> "PostgresServer | None":
        """The server announced by VBENCH_TEST_POSTGRES_URL (+ VBENCH_TEST_POSTGRES_DATA to stop/restart it)."""
        url = os.environ.get("VBENCH_TEST_POSTGRES_URL")
        if not url:
            return None
        data = os.environ.get("VBENCH_TEST_POSTGRES_DATA")
        if not data or not (Path(data) / "PG_VERSION").exists():
            return cls(url)
        data_dir = Path(data)
        version = (data_dir / "PG_VERSION").read_text().strip()
        return cls(url, data_dir, postgres_bindir(version), data_dir.owner())


def database_url(server_url: str, database: str) -> str:
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _admin_connection(server_url: str):
    import psycopg2

    connection = psycopg2.connect(server_url, connect_timeout=10)
    connection.autocommit = True  # CREATE/DROP DATABASE cannot run inside a transaction
    return connection


def create_database(server_url: str, prefix: str = "vbench_test") -> str:
    """Create a uniquely named database on the server and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    connection = _admin_connection(server_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return database_url(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    """Drop the database of ``url``, closing whatever connections a test left open (PostgreSQL >= 13)."""
    name = urlsplit(url).path.lstrip("/")
    connection = _admin_connection(server_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        connection.close()


# --- SLURM ----------------------------------------------------------------------------------------
SLURM_PROGRAMS = ("slurmctld", "slurmd", "sinfo", "sbatch", "scontrol", "squeue", "scancel")


def _slurm_program(name: str) -> str | None:
    """``name`` on PATH, or in /usr/sbin (not on a normal user's PATH)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin")


# The states a SLURM job ends in (man squeue, JOB STATE CODES).
FINAL_JOB_STATES = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                    "PREEMPTED", "TIMEOUT"}


@dataclass
class SlurmCluster:
    """A SLURM cluster reached through ``conf``; ``root`` holds its state when these tests started it."""

    conf: Path
    root: Path | None = None

    @property
    def env(self) -> dict:
        """os.environ with SLURM_CONF pointing at this cluster (for subprocesses that call sbatch & co.)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def command(self, *args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command (``sbatch``, ``squeue``, ...) against this cluster."""
        return run(list(args), timeout=timeout, env=self.env, check=check)

    def answers(self) -> bool:
        try:
            return self.command("sinfo", "-h", "-o", "%T", timeout=15, check=False).returncode == 0
        except ServiceError:
            return False

    def node_states(self) -> list[str]:
        return self.command("sinfo", "-h", "-N", "-o", "%T").stdout.split()

    def job_state(self, job_id: str) -> str:
        """PENDING, RUNNING, COMPLETED, CANCELLED, FAILED ... (scontrol remembers a job for MinJobAge, 300 s)."""
        output = self.command("scontrol", "show", "job", job_id).stdout
        return re.search(r"JobState=(\S+)", output).group(1)

    def wait_jobs(self, job_ids: list[str], timeout: float = 120) -> dict[str, str]:
        """Wait until every one of ``job_ids`` is in a final state; returns those states.

        Final, not "neither pending nor running": a requeued or held job shows states (REQUEUED,
        REQUEUE_HOLD, SPECIAL_EXIT, ...) that are not its end. Polls scontrol every 0.2 s: ``sbatch
        --wait`` polls at a growing interval and added up to ten seconds to a two-second job. An array
        job's id stands for all its tasks.
        """
        states = {}

        def all_done() -> bool:
            for job_id in job_ids:
                output = self.command("scontrol", "-o", "show", "job", job_id).stdout
                states[job_id] = ",".join(sorted(set(re.findall(r"JobState=(\S+)", output))))
            return all(set(state.split(",")) <= FINAL_JOB_STATES for state in states.values())

        try:
            wait_for(all_done, timeout, f"SLURM jobs {', '.join(job_ids)} to finish")
        except ServiceError as exc:
            raise ServiceError(f"{exc} (last seen: {states})") from None
        return states

    def wait_idle(self, timeout: float = 60) -> None:
        wait_for(lambda: self.node_states() == ["idle"], timeout, f"the SLURM node of {self.conf} to be idle")

    def remove(self) -> None:
        """Cancel every job, shut the daemons and munged down, delete the state; only for a cluster ``create`` made."""
        if self.root is None or not (self.root / STARTED_HERE).exists():
            raise ServiceError(f"the SLURM cluster of {self.conf} was not started by these tests; not stopping it")
        if self.answers():
            with contextlib.suppress(ServiceError):
                jobs = self.command("squeue", "-h", "-o", "%i").stdout.split()
                if jobs:
                    self.command("scancel", *jobs)
                    wait_for(lambda: not self.command("squeue", "-h", "-o", "%i").stdout.split(), 30, "jobs to end")
            self.command("scontrol", "shutdown", check=False)
        for pid_file in ("slurmctld.pid", "slurmd.pid", "munge/munged.pid"):
            stop_pid_file(self.root / pid_file)
        shutil.rmtree(self.root, ignore_errors=True)

    @classmethod
    def from_environment(cls) -> "SlurmCluster | None":
        """The cluster of $SLURM_CONF when it answers ``sinfo``."""
        conf = os.environ.get("SLURM_CONF")
        if not conf or shutil.which("sinfo") is None:
            return None
        cluster = cls(Path(conf), Path(conf).parent if (Path(conf).parent / STARTED_HERE).exists() else None)
        return cluster if cluster.answers() else None

    @classmethod
    def create(cls, prefix: str = "vbench-slurm-") -> "SlurmCluster":
        """Start munged, slurmctld and slurmd for this machine as one node, all state under a new /tmp directory."""
        missing = [name for name in (*SLURM_PROGRAMS, "munged") if _slurm_program(name) is None]
        if missing:
            raise ServiceUnavailable(f"no SLURM/munge binaries ({', '.join(missing)}): apt-get install slurm-wlm munge")
        if os.geteuid() != 0:
            raise ServiceUnavailable("starting a SLURM cluster needs root; or set SLURM_CONF to a running cluster")
        if not Path("/etc/munge/munge.key").exists():
            raise ServiceUnavailable("no /etc/munge/munge.key (apt-get install munge creates it)")
        root = service_tmpdir(prefix)  # searchable by all: munged checks every directory above its socket
        (root / STARTED_HERE).touch()
        for name in ("state", "spool", "log"):
            (root / name).mkdir()
        cluster = cls(root / "slurm.conf", root)
        try:
            write_slurm_conf(root, start_munged(root / "munge"))
            run([_slurm_program("slurmctld"), "-f", cluster.conf], timeout=30)
            run([_slurm_program("slurmd"), "-f", cluster.conf], timeout=30)
            cluster.wait_idle()
        except ServiceError as exc:
            logs = "".join(f"\n--- {log.name}\n{log.read_text()[-2000:]}" for log in sorted(root.glob("*/*.log")))
            cluster.remove()
            raise ServiceError(f"{exc}{logs}") from None
        return cluster


def start_munged(directory: Path) -> Path:
    """A private munged (as the munge user) with its socket in ``directory``; returns the socket path.

    A private socket instead of /run/munge keeps this cluster from sharing (and then stopping) a
    munged that something else uses.
    """
    directory.mkdir(mode=0o755)
    shutil.chown(directory, user="munge", group="munge")
    socket_path = directory / "munge.socket"
    run([*as_user("munge"), _slurm_program("munged"), f"--socket={socket_path}", f"--pid-file={directory / 'munged.pid'}",
         f"--log-file={directory / 'munged.log'}", f"--seed-file={directory / 'munged.seed'}"], timeout=30)
    wait_for(socket_path.exists, 10, f"munged to create {socket_path}")
    return socket_path


def slurm_node_line() -> str:
    """This machine as a SLURM node: ``slurmd -C``'s first line without UpTime, reached at 127.0.0.1."""
    first_line = run([_slurm_program("slurmd"), "-C"]).stdout.splitlines()[0]
    return re.sub(r"\s*UpTime=\S+", "", first_line) + " NodeAddr=127.0.0.1 State=UNKNOWN"


def write_slurm_conf(root: Path, munge_socket: Path) -> Path:
    """slurm.conf for a one-node cluster run as root (facts checked on Debian bookworm's slurm-wlm 22.05).

    No cgroup.conf: 22.05 does not know CgroupPlugin=disabled and slurmd then fails to start, so
    process tracking is proctrack/linuxproc and tasks are not bound (task/none).
    """
    host = socket.gethostname().split(".")[0]
    settings = {
        "ClusterName": "vbench",
        "SlurmctldHost": f"{host}(127.0.0.1)",
        "SlurmctldPort": free_port(),
        "SlurmdPort": free_port(),
        "SlurmUser": "root",
        "SlurmdUser": "root",
        "AuthType": "auth/munge",
        "CredType": "cred/munge",
        # cred_expire also holds a requeued job back (cred_expire + 1 s) until slurmd has forgotten the revoked
        # credential of its first run; 120 s by default, which tests need not wait.
        "AuthInfo": f"socket={munge_socket},cred_expire=10",
        "ProctrackType": "proctrack/linuxproc",
        "TaskPlugin": "task/none",
        # a requeued job may start once its hold ends, but only a scheduling pass starts it: every second here,
        # not SLURM's default of every 60 s (main loop) and 30 s (backfill), which tests would wait out
        "SchedulerParameters": "sched_interval=1,bf_interval=1",
        # seconds between SIGTERM and SIGKILL when a job ends early (30 by default): a killed job's leftover
        # processes are waited for that long before the job is over
        "KillWait": 2,
        "SelectType": "select/cons_tres",
        "SelectTypeParameters": "CR_Core",
        "AccountingStorageType": "accounting_storage/none",
        "JobAcctGatherType": "jobacct_gather/none",
        "JobCompType": "jobcomp/none",
        "ReturnToService": 2,
        "MpiDefault": "none",
        "StateSaveLocation": root / "state",
        "SlurmdSpoolDir": root / "spool",
        "SlurmctldPidFile": root / "slurmctld.pid",
        "SlurmdPidFile": root / "slurmd.pid",
        "SlurmctldLogFile": root / "log" / "slurmctld.log",
        "SlurmdLogFile": root / "log" / "slurmd.log",
    }
    lines = [f"{key}={value}" for key, value in settings.items()]
    lines += [slurm_node_line(), "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"]
    conf = root / "slurm.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


# --- Chromium -------------------------------------------------------------------------------------
def chrome_options(user_data_dir: Path):
    from selenium.webdriver.chrome.options import Options

    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # driver.get_log("browser") reads the console
    return options


def start_chrome(user_data_dir: Path):
    """Headless Chromium driven through Debian's chromedriver (never a downloaded one)."""
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        raise ServiceUnavailable(f"no {' and '.join(missing)} (apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise ServiceUnavailable("selenium is not installed (python3 -m pip install -e '.[dev]')") from None
    # With an explicit driver path selenium never runs selenium-manager (which would try the network).
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=chrome_options(user_data_dir))


def console_errors(driver) -> list[dict]:
    """Drain the browser console and return its SEVERE entries (console.error, uncaught exceptions, failed loads)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


@contextlib.contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP on 127.0.0.1 (a free port) in a thread; yields the base URL ending in '/'."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *_args):  # keep the test output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


# --- pytest fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The PostgreSQL server of $VBENCH_TEST_POSTGRES_URL, else a throwaway one started (and stopped) here."""
    if importlib.util.find_spec("psycopg2") is None:  # the dev extra installs it
        service_unavailable("psycopg2 is not installed (python3 -m pip install -e '.[dev]')")
    with announced_or_started(PostgresServer) as server:
        yield server


@contextlib.contextmanager
def announced_or_started(service) -> Iterator:
    """The ``service`` the environment announces, else one started here and removed afterwards."""
    announced = service.from_environment()
    if announced is not None:
        yield announced
        return
    try:
        started = service.create()
    except ServiceUnavailable as exc:
        service_unavailable(str(exc))
    try:
        yield started
    finally:
        started.remove()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """URL of the test server's ``postgres`` database as its superuser (shared by the whole session)."""
    return postgres_server.url


@pytest.fixture
def fresh_database(postgres_url: str) -> Iterator[str]:
    """URL of a new, empty, uniquely named database on the test server; dropped after the test."""
    url = create_database(postgres_url)
    try:
        yield url
    finally:
        drop_database(postgres_url, url)


@pytest.fixture
def restart_postgres(postgres_server: PostgresServer) -> Callable[[], None]:
    """``restart_postgres()`` stops and starts the test server (same port): open connections break."""

    def restart() -> None:
        try:
            postgres_server.restart()
        except ServiceUnavailable as exc:
            service_unavailable(str(exc))

    return restart


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A one-node SLURM cluster: the one of $SLURM_CONF when it answers, else one started here.

    While the session runs, SLURM_CONF points at it, so code under test that calls sbatch finds it.
    """
    with announced_or_started(SlurmCluster) as cluster, pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLURM_CONF", str(cluster.conf))
        yield cluster


@pytest.fixture
def chrome(tmp_path_factory, monkeypatch):
    """A headless Chromium WebDriver (selenium) with the browser console captured: ``console_errors(chrome)``."""
    # Should selenium ever try its manager after all, fail at once instead of reaching for the network.
    monkeypatch.setenv("SE_MANAGER_PATH", "/nonexistent/selenium-manager")
    try:
        driver = start_chrome(tmp_path_factory.mktemp("chromium-profile"))
    except ServiceUnavailable as exc:
        service_unavailable(str(exc))
    try:
        yield driver
    finally:
        driver.quit()


# --- CLI for CI -----------------------------------------------------------------------------------
def start_services(names: list[str]) -> dict[str, str]:
    """Start the named services (``postgres``, ``slurm``) left running; returns the environment that announces them."""
    env = {"VBENCH_CI": "1"}
    if "postgres" in names:
        server = PostgresServer.create(prefix="vbench-ci-postgres-")
        env |= {"VBENCH_TEST_POSTGRES_URL": server.url, "VBENCH_TEST_POSTGRES_DATA": str(server.data_dir)}
    if "slurm" in names:
        env["SLURM_CONF"] = str(SlurmCluster.create(prefix="vbench-ci-slurm-").conf)
    return env


def stop_services() -> None:
    """Stop the services the environment announces, if this module started them."""
    server = PostgresServer.from_environment()
    if server is not None and server.data_dir is not None and (server.data_dir.parent / STARTED_HERE).exists():
        server.remove()
    conf = os.environ.get("SLURM_CONF")
    if conf and (Path(conf).parent / STARTED_HERE).exists():
        SlurmCluster(Path(conf), Path(conf).parent).remove()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="start services and print `export NAME=VALUE` lines for eval")
    start.add_argument("services", nargs="*", help="postgres and/or slurm (default: both)")
    commands.add_parser("stop", help="stop the services that $VBENCH_TEST_POSTGRES_DATA and $SLURM_CONF name")
    args = parser.parse_args(argv)
    unknown = set(getattr(args, "services", None) or []) - {"postgres", "slurm"}
    if unknown:
        parser.error(f"unknown service(s) {', '.join(sorted(unknown))}; choose postgres and/or slurm")
    try:
        if args.command == "start":
            for name, value in start_services(args.services or ["postgres", "slurm"]).items():
                print(f"export {name}={shlex.quote(value)}")
        else:
            stop_services()
    except (ServiceUnavailable, ServiceError) as exc:
        print(f"services: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
