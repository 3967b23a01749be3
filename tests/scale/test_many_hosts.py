"""Many hosts against one database: every kind of worker at once, and throughput growing with workers.

Each simulated host is a process tree in a UTS namespace of its own (``unshare --uts``,
which needs root), so ``socket.gethostname()`` — and with it the worker names in claim
tokens, Log rows and heartbeats — is the host's own; each has its own TMPDIR. The network is
shared: every host reaches the one PostgreSQL or MariaDB, Redis (database 9) and the SMTP sink
(tests.faulty_smtp in a process, recording each accepted message's subject in a file) on
127.0.0.1. The test process queues the mail as an application would, in many commits.

* ``ManyHostsTest``: 20,000 emails through eight hosts, two of each kind: ``send_queued_mail``
  run again and again as cron would (tests.scale.cron), ``runmailer``, a ``celery worker``
  (CELERY_ENABLED: one task per commit, queues of this test's own) and django-tasks-db's
  ``db_worker`` (TASKS_ENABLED: one task per commit). Each email arrives once, each kind
  delivered some, the delivering host of each email (``Log.worker``) agrees with what each
  host's workers reported, and every heartbeat names a simulated host.
* ``ThroughputTest``: the same batch drained by 1, 2, 4 and 8 ``runmailer`` hosts (one
  delivery thread each) from a sink that takes 20 ms per message, as a remote server does.

Figures are printed and written to the JSON file POST_OFFICE_SCALE_RESULTS (by default
``post_office_scale_results.json`` in the system's temporary directory), one entry per database.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import skipIf

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.test import override_settings
from django_tasks_db.models import DBTaskResult

from post_office import mail
from post_office.conf import settings as po_settings
from post_office.models import STATUS, Email, Log, WorkerHeartbeat
from tests.celery_publisher import open_publisher
from tests.celery_workers.test_celery_workers import stop_group
from tests.helpers import db_worker_exited_in_commit
from tests.test_faults import ROOT, SENDER, ProcessTestCase, arrived, wait_until

BROKER = "redis://127.0.0.1:6379/9"
SETTINGS = "tests.scale.settings"
TASKS_QUEUE = settings.POST_OFFICE["TASKS_QUEUE"]
SUMMARY = re.compile(r"^(\d+) sent, (\d+) failed, (\d+) requeued", re.MULTILINE)
#: No chatter between the celery workers (gossip, mingle, event heartbeats): they meet only in the broker and database.
CELERY_QUIET = ["--without-gossip", "--without-mingle", "--without-heartbeat"]
CELERY_SENT = re.compile(r"succeeded in [\d.]+s: \{'sent': (\d+)")


@dataclass
class Host:
    """One simulated host: its name (= its hostname), what it runs, its process tree and output."""

    name: str
    kind: str
    process: subprocess.Popen[bytes]
    output: Path
    tmp: Path

    def text(self) -> str:
        return self.output.read_text(errors="replace")


def check_unshare() -> None:
    """Fail (not skip) when hosts with hostnames of their own cannot be made here."""
    if shutil.which("unshare") is None:
        raise AssertionError("the many-hosts test needs util-linux's `unshare` to give each host its own hostname")
    probe = subprocess.run(
        ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && hostname', "po-scale-probe"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0 or probe.stdout.strip() != "po-scale-probe":
        raise AssertionError(
            "`unshare --uts` cannot give a process a hostname of its own here (it needs root or "
            f"CAP_SYS_ADMIN): {probe.stderr.strip() or probe.stdout.strip()}"
        )


def record_results(section: str, figures: dict[str, Any]) -> Path:
    """Merge ``figures`` into the results file under this database's vendor and ``section``."""
    path = Path(
        os.environ.get("POST_OFFICE_SCALE_RESULTS") or Path(tempfile.gettempdir()) / "post_office_scale_results.json"
    )
    results = json.loads(path.read_text()) if path.exists() else {}
    results.setdefault(connection.vendor, {})[section] = figures
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@skipIf(connection.vendor == "sqlite", "many hosts on PostgreSQL and MariaDB")
class HostsTestCase(ProcessTestCase):
    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        check_unshare()

    def setUp(self) -> None:
        super().setUp()
        self.hosts: dict[str, Host] = {}
        keep = os.environ.get("POST_OFFICE_SCALE_KEEP")
        if keep:  # the hosts' outputs, for a look after the run
            self.addCleanup(lambda: shutil.copytree(self.directory, Path(keep) / self.directory.name))

    def env(self, port: int, **extra: str) -> dict[str, str]:
        return {**super().env(port, **extra), "DJANGO_SETTINGS_MODULE": SETTINGS}

    def command(self, kind: str, name: str) -> list[str]:
        manage = [sys.executable, "manage.py"]
        if kind == "cron":
            send = [*manage, "send_queued_mail", f"--settings={SETTINGS}"]
            return [sys.executable, "-m", "tests.scale.cron", "--pause=1", "--", *send]
        if kind == "runmailer":
            # Polls every 0.2 s when idle (MariaDB); PostgreSQL's NOTIFY wakes it at once anyway.
            return [*manage, "runmailer", f"--settings={SETTINGS}", "--sleep=0.2"]
        if kind == "celery":
            queues = ",".join(self.celery_queues)
            args = [sys.executable, "-m", "celery", "-A", "tests.celery_workers.app", "worker", "-l", "INFO"]
            return [*args, "-Q", queues, "-c", "1", "-n", f"{name}@%h", *CELERY_QUIET]
        if kind == "tasks":
            args = [f"--queue-name={TASKS_QUEUE}", "--interval=0.2", "--no-startup-delay", "--no-reload"]
            return [*manage, "db_worker", f"--settings={SETTINGS}", *args, f"--worker-id={name}"]
        raise ValueError(kind)

    def start_host(self, name: str, kind: str, env: dict[str, str], options: dict[str, Any]) -> Host:
        """Run ``kind`` of worker on a new host ``name``: its own hostname and TMPDIR, its own process group."""
        directory = self.directory / name
        tmp = directory / "tmp"
        tmp.mkdir(parents=True)
        output = directory / "output.txt"
        host_env = {**env, "TMPDIR": str(tmp), "POST_OFFICE_TEST_OPTIONS": json.dumps(options)}
        # No --fork: a UTS namespace needs none, so the worker keeps the process id signals go to.
        args = ["unshare", "--uts", "--", "sh", "-c", 'hostname "$0" && exec "$@"', name, *self.command(kind, name)]
        with output.open("wb") as handle:
            process = subprocess.Popen(
                args, cwd=ROOT, env=host_env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.addCleanup(stop_group, process)
        host = Host(name, kind, process, output, tmp)
        self.hosts[name] = host
        return host

    def ready(self, host: Host) -> bool:
        if host.process.poll() is not None:
            raise AssertionError(f"host {host.name} ({host.kind}) exited {host.process.returncode}:\n{host.text()}")
        if host.kind == "cron":  # its first run is over
            return WorkerHeartbeat.objects.filter(name=f"send_queued_mail@{host.name}", state="finished").exists()
        if host.kind == "runmailer":
            return WorkerHeartbeat.objects.filter(hostname=host.name, state="idle").exists()
        if host.kind == "celery":
            return " ready." in host.text()
        return "Starting worker" in host.text()

    def wait_ready(self, hosts: list[Host], timeout: float = 120) -> None:
        wait_until(lambda: all(self.ready(h) for h in hosts), timeout, f"hosts {[h.name for h in hosts]}", step=0.2)

    def stop_hosts(self, hosts: list[Host], timeout: float = 60) -> None:
        """SIGTERM each host's worker (its first process: a graceful stop for every kind); each must exit 0.

        Not its whole process group: a celery worker stops its pool's children itself, after their
        task, and the cron loop lets the run under way finish.
        """
        for host in hosts:
            host.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for host in hosts:
            try:
                host.process.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"host {host.name} still running {timeout}s after SIGTERM:\n{host.text()}"
                ) from None
            if host.kind == "tasks" and db_worker_exited_in_commit(host.text()):
                continue  # django-tasks-db's shutdown race (tests/helpers.py), not a fault of ours
            self.assertEqual(host.process.returncode, 0, f"{host.name} ({host.kind}):\n{host.text()}")

    def delivered_by_host(self, emails: Any = None) -> Counter[str]:
        """Sent attempts per host, from ``Log.worker``: the claim token ``host:pid:random``."""
        logs = Log.objects.filter(status=STATUS.sent)
        if emails is not None:
            logs = logs.filter(email__in=emails)
        per_token = logs.values_list("worker").annotate(n=Count("id")).order_by()
        counts: Counter[str] = Counter()
        for worker, n in per_token:
            counts[worker.split(":", 1)[0]] += n
        return counts


class ManyHostsTest(HostsTestCase):
    TOTAL = 20_000
    PER_COMMIT = 100
    PER_KIND = 2
    KINDS = ("cron", "runmailer", "celery", "tasks")
    THREADS = 4

    @classmethod
    def setUpClass(cls) -> None:
        super().setUpClass()
        # The publishing side (this process queues the mail): shared tasks are sent through this app.
        cls.app = open_publisher("post_office_scale_publisher", BROKER, "Redis")

    @classmethod
    def tearDownClass(cls) -> None:
        cls.app.close()
        super().tearDownClass()

    def setUp(self) -> None:
        super().setUp()
        self.app.set_current()
        self.tag = f"po_scale_{uuid.uuid4().hex[:10]}"
        self.celery_queues = [f"{self.tag}_bulk", f"{self.tag}_urgent"]
        self.addCleanup(self.delete_broker_keys)
        self.options = {
            "CELERY_ENABLED": True,
            "CELERY_QUEUE": self.celery_queues[0],
            "CELERY_PRIORITY_QUEUE": self.celery_queues[1],
            "THREADS_PER_PROCESS": self.THREADS,
        }
        enabled = override_settings(POST_OFFICE={**po_settings.raw, **self.options})
        enabled.enable()
        self.addCleanup(enabled.disable)

    def delete_broker_keys(self) -> None:
        with self.app.connection_for_write() as conn:
            channel = conn.default_channel
            for name in self.celery_queues:
                for delete in (channel.queue_delete, channel.exchange_delete):
                    try:
                        delete(name)
                    except Exception:  # noqa: BLE001, S110 - never declared
                        pass
            keys = list(channel.client.scan_iter(match=f"*{self.tag}*"))
            if keys:
                channel.client.delete(*keys)

    def queue_commits(self) -> int:
        """Queue TOTAL numbered emails, PER_COMMIT per transaction (one task of each kind per commit)."""
        commits = 0
        for start in range(0, self.TOTAL, self.PER_COMMIT):
            with transaction.atomic():
                mail.send_many(
                    [
                        {"recipients": [f"u{i}@example.com"], "sender": SENDER, "subject": f"mail {i}", "message": "b"}
                        for i in range(start, min(self.TOTAL, start + self.PER_COMMIT))
                    ]
                )
            commits += 1
        return commits

    def reported_by(self, host: Host) -> int:
        """What a host's workers themselves said they sent."""
        if host.kind in ("cron", "runmailer"):  # each run's (each runner's) summary line
            return sum(int(m.group(1)) for m in SUMMARY.finditer(host.text()))
        if host.kind == "celery":  # each task's result
            return sum(int(n) for n in CELERY_SENT.findall(host.text()))
        runs = DBTaskResult.objects.filter(status="SUCCESSFUL")
        return sum(t.return_value["sent"] for t in runs if t.worker_ids == [host.name])

    def explain(self, subjects: list[str]) -> str:
        """The attempts logged for these emails and the hosts' warnings, for a failure message."""
        if not subjects:
            return ""
        logs = Log.objects.filter(email__subject__in=subjects[:5]).order_by("email_id", "id")
        lines = [f"{log.email.subject}: {log.get_status_display()} by {log.worker} at {log.date}" for log in logs]
        for host in self.hosts.values():
            lines += [
                f"{host.name}: {line}" for line in host.text().splitlines() if "WARNING" in line or "ERROR" in line
            ]
        return "\n".join(lines)

    def test_20000_emails_on_eight_hosts_four_kinds_of_worker_each_once(self):
        env = self.env(self.start_sink(), POST_OFFICE_CELERY_BROKER=BROKER)
        names = {f"{kind}-{n}": kind for n in range(1, self.PER_KIND + 1) for kind in self.KINDS}
        cpu_before = os.times()
        hosts = [self.start_host(name, kind, env, self.options) for name, kind in names.items()]
        self.wait_ready(hosts)
        load_before = os.getloadavg()
        ready = os.times()

        started = time.monotonic()
        commits = self.queue_commits()
        queued = time.monotonic()
        everyone = {f"mail {i}" for i in range(self.TOTAL)}
        wait_until(lambda: len(arrived(self.record)) >= self.TOTAL, 300, "every email to arrive", step=0.2)
        finished = time.monotonic()
        load_during = os.getloadavg()
        wait_until(lambda: not Email.objects.exclude(status=STATUS.sent).exists(), 30, "every email recorded sent")
        # The task runs that found nothing left end too; then every host stops gracefully.
        wait_until(
            lambda: not DBTaskResult.objects.filter(status="RUNNING").exists(), 60, "the task runs to end", step=0.2
        )
        self.stop_hosts(hosts)
        # CPU seconds: the hosts' processes (children, counted once waited for; start-up included) and this one's.
        cpu_after = os.times()
        workers_cpu = sum(cpu_after[i] - cpu_before[i] for i in (2, 3))
        queueing_cpu = sum(cpu_after[i] - ready[i] for i in (0, 1))

        # Each arrived exactly once; each row is sent, after one attempt.
        counts = arrived(self.record)
        twice = sorted(s for s, n in counts.items() if n > 1)
        self.assertEqual(twice, [], f"delivered more than once: {self.explain(twice)}")
        self.assertEqual(set(counts), everyone)
        self.assertEqual(Email.objects.count(), self.TOTAL)
        self.assertEqual(Email.objects.filter(status=STATUS.sent).count(), self.TOTAL)
        self.assertEqual(Log.objects.count(), self.TOTAL)
        self.assertFalse(Log.objects.values("email").annotate(n=Count("id")).filter(n__gt=1).exists())

        # Who delivered: the host in each Log row's claim token, and what each host's workers reported.
        by_host = self.delivered_by_host()
        self.assertEqual(set(by_host) - set(names), set(), "a delivery by a host that is not a simulated one")
        self.assertEqual(sum(by_host.values()), self.TOTAL)
        reported = {host.name: self.reported_by(host) for host in hosts}
        self.assertEqual(reported, {name: by_host[name] for name in names}, "what hosts reported vs Log.worker")
        by_kind = Counter({kind: 0 for kind in self.KINDS})
        for name, n in by_host.items():
            by_kind[names[name]] += n
        self.assertTrue(all(by_kind.values()), f"every kind of worker delivered some: {dict(by_kind)}")
        self.assertEqual(set(by_host), set(names), f"every host delivered some: {dict(by_host)}")

        # The heartbeats: one row per run kind and host (one per runmailer process), each a simulated host.
        beats = dict(WorkerHeartbeat.objects.values_list("name", "hostname"))
        self.assertEqual(set(beats.values()), set(names), beats)
        self.assertNotIn(socket.gethostname(), beats.values())
        expected = {"cron": "send_queued_mail@{}", "celery": "celery@{}", "tasks": "django_tasks@{}"}
        for name, kind in names.items():
            if kind == "runmailer":  # named after its worker, host:pid
                rows = [row for row, hostname in beats.items() if hostname == name]
                self.assertTrue(rows and all(row.startswith(f"{name}:") for row in rows), beats)
            else:
                self.assertEqual(beats.get(expected[kind].format(name)), name, beats)
        # Django Tasks got a task per commit (those still waiting when the queue was empty would find nothing).
        commit_tasks = [t for t in DBTaskResult.objects.all() if not t.args_kwargs["kwargs"].get("pickup")]
        self.assertEqual(len(commit_tasks), commits)
        tasks_run = DBTaskResult.objects.filter(status="SUCCESSFUL").count()

        elapsed = finished - started
        figures = {
            "emails": self.TOTAL,
            "commits": commits,
            "hosts": len(hosts),
            "threads_per_process": self.THREADS,
            "sink_delay_ms": 0,
            "seconds": round(elapsed, 1),
            "queueing_seconds": round(queued - started, 1),
            "emails_per_second": round(self.TOTAL / elapsed),
            "by_kind": dict(by_kind),
            "by_host": dict(sorted(by_host.items())),
            "django_tasks_runs": tasks_run,
            "workers_cpu_seconds": round(workers_cpu, 1),
            "test_process_cpu_seconds": round(queueing_cpu, 1),
            "cpus": cpu_count(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_during],
        }
        path = record_results("mixed", figures)
        print(  # noqa: T201 - the figures for benchmarks/RESULTS.md
            f"\n[{connection.vendor}] {self.TOTAL} emails in {commits} commits through {len(hosts)} hosts: "
            f"{elapsed:.1f}s from the first commit to the last arrival (queueing {queued - started:.1f}s), "
            f"{self.TOTAL / elapsed:.0f} emails/s; by kind {dict(by_kind)}; by host {dict(sorted(by_host.items()))}; "
            f"CPU: workers {workers_cpu:.0f}s, queueing process {queueing_cpu:.0f}s; "
            f"load {load_before[0]:.1f} -> {load_during[0]:.1f} ({path})"
        )


class ThroughputTest(HostsTestCase):
    """The same batch drained by 1, 2, 4 and 8 runmailer hosts, each with one delivery thread.

    The sink takes DELAY_MS per message before its 250 reply, as a remote server does; with one
    thread a runmailer process delivers at most 1000 / DELAY_MS emails a second, so a process is
    one unit of capacity and the series shows whether adding hosts adds capacity (claims that do
    not serialise the workers) rather than how threads overlap inside one process. Each count runs
    twice, in the order 1, 2, 4, 8, 8, 4, 2, 1, and keeps its better rate: load from other jobs
    on the box only ever slows a round down.
    """

    BATCH = 800
    DELAY_MS = 20
    SERIES = (1, 2, 4, 8)
    OPTIONS = {"THREADS_PER_PROCESS": 1, "BATCH_SIZE": 20, "TASKS_ENABLED": False}

    def setUp(self) -> None:
        super().setUp()
        quiet = override_settings(POST_OFFICE={**po_settings.raw, **self.OPTIONS})  # no task per commit here
        quiet.enable()
        self.addCleanup(quiet.disable)

    def drain(self, env: dict[str, str], label: str, workers: int) -> float:
        """Start ``workers`` runmailer hosts, queue BATCH emails in one commit; return emails/s until all arrived."""
        hosts = [self.start_host(f"{label}-{n}", "runmailer", env, self.OPTIONS) for n in range(1, workers + 1)]
        self.wait_ready(hosts)
        prefix = f"{label} mail "
        with transaction.atomic():
            mail.send_many(
                [
                    {"recipients": [f"u{i}@example.com"], "sender": SENDER, "subject": f"{prefix}{i}", "message": "b"}
                    for i in range(self.BATCH)
                ]
            )
        started = time.monotonic()

        def mine() -> Counter[str]:
            return Counter({s: n for s, n in arrived(self.record).items() if s.startswith(prefix)})

        wait_until(lambda: len(mine()) >= self.BATCH, 120, f"{label}: the batch to arrive", step=0.02)
        elapsed = time.monotonic() - started
        self.stop_hosts(hosts)
        counts = mine()
        self.assertEqual(set(counts), {f"{prefix}{i}" for i in range(self.BATCH)})
        self.assertEqual(max(counts.values()), 1, f"{label}: delivered more than once")
        by_host = self.delivered_by_host(Email.objects.filter(subject__startswith=prefix))
        self.assertEqual(set(by_host), {h.name for h in hosts}, f"{label}: every host delivered some: {by_host}")
        self.assertEqual(sum(by_host.values()), self.BATCH)
        return self.BATCH / elapsed

    def test_throughput_grows_with_runmailer_hosts(self):
        env = self.env(self.start_sink(delay_ms=self.DELAY_MS))
        load_before = os.getloadavg()
        runs: dict[int, list[float]] = {n: [] for n in self.SERIES}
        for round_number, workers in enumerate([*self.SERIES, *reversed(self.SERIES)], start=1):
            runs[workers].append(self.drain(env, f"r{round_number}w{workers}", workers))
        load_after = os.getloadavg()
        rate = {n: max(rates) for n, rates in runs.items()}
        ceiling = 1000 / self.DELAY_MS

        figures = {
            "emails_per_round": self.BATCH,
            "sink_delay_ms": self.DELAY_MS,
            "threads_per_process": 1,
            "batch_size": self.OPTIONS["BATCH_SIZE"],
            "emails_per_second": {str(n): round(r, 1) for n, r in rate.items()},
            "runs": {str(n): [round(r, 1) for r in rates] for n, rates in runs.items()},
            "speedup": {str(n): round(r / rate[1], 2) for n, r in rate.items()},
            "ceiling_per_process": ceiling,
            "cpus": cpu_count(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after],
        }
        path = record_results("series", figures)
        print(  # noqa: T201 - the figures for benchmarks/RESULTS.md
            f"\n[{connection.vendor}] {self.BATCH} emails, sink {self.DELAY_MS} ms/message, one thread per runmailer: "
            + ", ".join(f"{n} hosts {r:.0f}/s ({r / rate[1]:.2f}x)" for n, r in rate.items())
            + f"; runs {figures['runs']}; load {load_before[0]:.1f} -> {load_after[0]:.1f} ({path})"
        )

        # One process cannot beat the sink's pace; more hosts add capacity.
        self.assertLessEqual(rate[1], ceiling * 1.05)
        self.assertGreaterEqual(rate[2], 1.5 * rate[1], figures)
        self.assertGreaterEqual(rate[4], 1.4 * rate[2], figures)
        self.assertGreaterEqual(rate[8], 1.1 * rate[4], figures)
