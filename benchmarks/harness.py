"""Shared helpers of the benchmark suite; imports neither post_office package.

run.py (our virtualenv) and dpo_run.py (django-post_office's virtualenv) both
use this module, so it depends on the standard library and, lazily, on Django
and psycopg only.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SQLITE_DIR = Path(os.environ.get("BENCH_SQLITE_DIR", os.path.join(tempfile.gettempdir(), "po_bench")))
PG = {
    "host": os.environ.get("PGHOST", "127.0.0.1"),
    "port": os.environ.get("PGPORT", "5432"),
    "user": os.environ.get("PGUSER", "postgres"),
}
MYSQL = {
    "host": os.environ.get("MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("MYSQL_PORT", "3306")),
    "user": os.environ.get("MYSQL_USER", "root"),
    "password": os.environ.get("MYSQL_PASSWORD", ""),
}

SENDER = "Benchmarks <bench@example.com>"
TEXT_BODY = ("Hello {name},\n\nThis is benchmark email number {seq}. " + "Lorem ipsum dolor sit amet. " * 12) + "\n"
HTML_BODY = (
    "<html><body><p>Hello <b>{name}</b>,</p><p>This is benchmark email number {seq}.</p>"
    + "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>" * 12
    + "</body></html>"
)


def email_kwargs(seq: int) -> dict[str, object]:
    """send() arguments of the seq-th benchmark email (the same for both packages)."""
    name = f"user{seq}"
    return {
        "recipients": [f"{name}@example.com"],
        "sender": SENDER,
        "subject": f"Benchmark email {seq}",
        "message": TEXT_BODY.format(name=name, seq=seq),
        "html_message": HTML_BODY.format(name=name, seq=seq),
        "headers": {"X-Bench-Seq": str(seq)},
    }


TEMPLATE = {
    "name": "bench_welcome",
    "subject": "Welcome {{ name }} ({{ seq }})",
    "content": "Hello {{ name }},\n\nYour number is {{ seq }}.\n{% for i in items %}- {{ i }}\n{% endfor %}",
    "html_content": "<p>Hello <b>{{ name }}</b>,</p><ul>{% for i in items %}<li>{{ i }}</li>{% endfor %}</ul>",
}


def template_kwargs(seq: int) -> dict[str, object]:
    return {
        "recipients": [f"user{seq}@example.com"],
        "sender": SENDER,
        "template": TEMPLATE["name"],
        "context": {"name": f"user{seq}", "seq": seq, "items": ["one", "two", "three"]},
        "headers": {"X-Bench-Seq": str(seq)},
    }


# -- timing, memory, queries -----------------------------------------------------


def rss_kib() -> dict[str, int]:
    """Current and peak resident set size of this process, in KiB."""
    values = {"VmRSS": 0, "VmHWM": 0}
    with open("/proc/self/status") as status:
        for line in status:
            key = line.split(":", 1)[0]
            if key in values:
                values[key] = int(line.split()[1])
    values["ru_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return values


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads) and of its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class QueryCounter:
    """Count every SQL statement on every connection of this process, in any thread.

    Installed as an execute wrapper on each database connection as it is
    created (connections are per thread), so delivery threads are counted too.
    Cheaper than CaptureQueriesContext, which keeps the SQL text of each query.
    """

    def __init__(self) -> None:
        self.count = 0
        self.enabled = False
        self._lock = threading.Lock()

    def __call__(self, execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if self.enabled:
            with self._lock:
                self.count += 1
        return execute(sql, params, many, context)

    def install(self) -> QueryCounter:
        from django.db import connections
        from django.db.backends.signals import connection_created

        def attach(sender, connection, **kwargs):  # type: ignore[no-untyped-def]
            if self not in connection.execute_wrappers:
                connection.execute_wrappers.append(self)

        connection_created.connect(attach, weak=False)
        for connection in connections.all():
            if self not in connection.execute_wrappers:
                connection.execute_wrappers.append(self)
        return self

    def start(self) -> None:
        self.count = 0
        self.enabled = True

    def stop(self) -> int:
        self.enabled = False
        return self.count


# -- databases -------------------------------------------------------------------


class CompileCounter:
    """Counts Django template compilations in this process, whichever package asks for them.

    Every ``django.template.base.Template`` compiles its source once, in
    ``compile_nodelist``; counting those calls needs nothing from either package.
    """

    def __enter__(self) -> CompileCounter:
        from django.template.base import Template

        self.count = 0
        self._original = original = Template.compile_nodelist

        def counting(template):  # type: ignore[no-untyped-def]
            self.count += 1
            return original(template)

        Template.compile_nodelist = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from django.template.base import Template

        Template.compile_nodelist = self._original  # type: ignore[method-assign]


def timed(run, n: int, queries: QueryCounter) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """Run ``run()`` once; return its rate, CPU per email, query count and template compilations for ``n`` emails."""
    queries.start()
    cpu = cpu_seconds()
    started = time.perf_counter()
    with CompileCounter() as compiles:
        run()
    elapsed = time.perf_counter() - started
    cpu = cpu_seconds() - cpu
    count = queries.stop()
    return {
        "n": n,
        "elapsed": elapsed,
        "rate": n / elapsed,
        "cpu_us_per_email": cpu / n * 1e6,
        "queries": count,
        "queries_per_email": count / n,
        "template_compiles": compiles.count,
    }


def pg_admin(sql: str, dbname: str = "postgres") -> None:
    import psycopg

    with psycopg.connect(dbname=dbname, autocommit=True, **PG) as connection:  # type: ignore[arg-type]
        connection.execute(sql)  # type: ignore[arg-type]


def pg_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(dbname="postgres", autocommit=True, **PG) as connection:  # type: ignore[arg-type]
        return connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is not None


def mysql_admin(sql: str) -> list[tuple[object, ...]]:
    import pymysql

    connection = pymysql.connect(autocommit=True, **MYSQL)  # type: ignore[arg-type]
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql)
            return list(cursor.fetchall())
    finally:
        connection.close()


def mysql_command(tool: str) -> list[str]:
    """A MariaDB client tool's command line for the benchmark server."""
    command = [tool, f"--host={MYSQL['host']}", f"--port={MYSQL['port']}", f"--user={MYSQL['user']}"]
    return command + ([f"--password={MYSQL['password']}"] if MYSQL["password"] else [])


def drop_database(db: str, name: str) -> None:
    if db == "postgres":
        pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif db == "mysql":
        mysql_admin(f"DROP DATABASE IF EXISTS `{name}`")
    else:
        for suffix in ("", "-journal", "-wal", "-shm"):
            path = SQLITE_DIR / f"{name}.sqlite3{suffix}"
            if path.exists():
                path.unlink()


def clone_database(db: str, template: str, name: str) -> None:
    """Make ``name`` a fresh copy of ``template`` (PostgreSQL template database, or a file copy)."""
    drop_database(db, name)
    if db == "postgres":
        pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    elif db == "mysql":
        # MariaDB has no template databases: a dump of the template, loaded into the new one.
        mysql_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        dump = subprocess.run(
            [*mysql_command("mysqldump"), "--single-transaction", template], capture_output=True, check=True
        )
        subprocess.run([*mysql_command("mysql"), name], input=dump.stdout, capture_output=True, check=True)
    else:
        shutil.copyfile(SQLITE_DIR / f"{template}.sqlite3", SQLITE_DIR / f"{name}.sqlite3")


def database_exists(db: str, name: str) -> bool:
    if db == "postgres":
        return pg_exists(name)
    if db == "mysql":
        return bool(mysql_admin(f"SHOW DATABASES LIKE '{name}'"))
    return (SQLITE_DIR / f"{name}.sqlite3").exists()


def create_empty_database(db: str, name: str) -> None:
    drop_database(db, name)
    if db == "postgres":
        pg_admin(f'CREATE DATABASE "{name}"')
    elif db == "mysql":
        mysql_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    else:
        SQLITE_DIR.mkdir(parents=True, exist_ok=True)


def database_settings(
    db: str, name: str, sqlite_options: dict[str, object] | None = None
) -> dict[str, dict[str, object]]:
    """DATABASES for a benchmark settings module (both packages use the same databases layout)."""
    if db == "postgres":
        return {
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": name,
                "USER": PG["user"],
                "HOST": PG["host"],
                "PORT": PG["port"],
            }
        }
    if db == "mysql":
        try:
            import MySQLdb  # noqa: F401  (mysqlclient, when it is installed)
        except ImportError:
            import pymysql

            pymysql.install_as_MySQLdb()
        return {
            "default": {
                "ENGINE": "django.db.backends.mysql",
                "NAME": name,
                "USER": MYSQL["user"],
                "PASSWORD": MYSQL["password"],
                "HOST": MYSQL["host"],
                "PORT": str(MYSQL["port"]),
                "OPTIONS": {"charset": "utf8mb4"},
            }
        }
    if db == "sqlite":
        SQLITE_DIR.mkdir(parents=True, exist_ok=True)
        return {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(SQLITE_DIR / f"{name}.sqlite3"),
                "OPTIONS": sqlite_options or {},
            }
        }
    raise RuntimeError(f"BENCH_DB must be sqlite, postgres or mysql, not {db!r}")


# -- the SMTP sink ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Sink:
    """benchmarks/sink.py in its own process; ``stat()`` / ``reset()`` talk to it over SMTP."""

    def __init__(self, delay_ms: float = 0, python: str = sys.executable, kind: str = "minimal") -> None:
        self.delay_ms = delay_ms
        self.kind = kind
        self.port = free_port()
        self.count_file = os.path.join(tempfile.gettempdir(), f"po_bench_sink_{self.port}.json")
        self.process = subprocess.Popen(
            [python, str(HERE / "sink.py"), "--port", str(self.port), "--delay-ms", str(delay_ms)]
            + ["--count-file", self.count_file, "--kind", kind],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError("the SMTP sink did not start") from None
                time.sleep(0.05)

    def _command(self, verb: str) -> str:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
            code, reply = client.docmd(verb)
            if code != 250:
                raise RuntimeError(f"sink {verb}: {code} {reply!r}")
            return reply.decode()

    def stat(self) -> dict[str, object]:
        stats = json.loads(self._command("XSTAT"))
        stats["connections"] -= 1  # this control connection
        return stats

    def reset(self) -> None:
        self._command("XRESET")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- the limit: plain smtplib ------------------------------------------------------


def prebuilt_messages(count: int) -> list[bytes]:
    """The benchmark emails as bytes, built once (same shape as a queued email: text + HTML)."""
    messages = []
    for seq in range(count):
        kwargs = email_kwargs(seq)
        message = EmailMessage()
        message["Subject"] = kwargs["subject"]
        message["From"] = SENDER
        message["To"] = ", ".join(kwargs["recipients"])  # type: ignore[arg-type]
        message["X-Bench-Seq"] = str(seq)
        message["Message-ID"] = f"<bench.{seq}@example.com>"
        message.set_content(kwargs["message"])
        message.add_alternative(kwargs["html_message"], subtype="html")
        messages.append(message.as_bytes(policy=message.policy.clone(linesep="\r\n")))
    return messages


def smtplib_limit(port: int, messages: list[bytes], connections: int) -> float:
    """Push ``messages`` into the sink over ``connections`` smtplib connections; return seconds taken."""
    chunks = [messages[index::connections] for index in range(connections)]
    clients = []
    for _ in range(connections):
        client = smtplib.SMTP("127.0.0.1", port, timeout=30)
        client.ehlo()
        clients.append(client)
    barrier = threading.Barrier(connections + 1)

    def push(client: smtplib.SMTP, chunk: list[bytes]) -> None:
        barrier.wait()
        for data in chunk:
            client.sendmail("bench@example.com", ["user@example.com"], data)

    threads = [threading.Thread(target=push, args=pair) for pair in zip(clients, chunks, strict=True)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    for client in clients:
        client.quit()
    return elapsed


def wait_for(predicate, timeout: float = 30, interval: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def write_json(path: str | os.PathLike[str], data: object) -> None:
    with open(path, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, default=str)
