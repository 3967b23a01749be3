"""A host's crontab, sped up: run a command again and again until SIGTERM (or SIGINT).

``python -m tests.scale.cron --pause 1 -- python manage.py send_queued_mail``
runs the command, waits ``--pause`` seconds, runs it again. A signal lets the
run under way finish (as cron would) and then exits 0; it exits 1 when a run failed.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pause", type=float, default=1.0, help="Seconds between the end of a run and the next.")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="The command (after --).")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runs = 0
    status = 0
    while not stop.is_set():
        runs += 1
        print(f"-- run {runs}", flush=True)
        # The run ignores the signal: like a cron job, it is not what is being stopped.
        run = subprocess.run(command, check=False, preexec_fn=_ignore_signals)  # noqa: PLW1509 - no threads here
        if run.returncode != 0:
            print(f"-- run {runs} exited {run.returncode}", flush=True)
            status = 1
        stop.wait(args.pause)
    print(f"-- stopped after {runs} runs", flush=True)
    return status


def _ignore_signals() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


if __name__ == "__main__":
    sys.exit(main())
