"""End to end: ``example/demo.py`` queues, delivers over real SMTP and checks what arrived.

The demo is run exactly as ``make demo`` runs it (a separate interpreter), but
from another working directory and with its database and attachment files in a
temporary directory, so it neither depends on nor touches the checkout's state.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parent.parent / "example" / "demo.py"
SUMMARY = re.compile(
    r"^Summary: (?P<sent>\d+) sent, (?P<failed>\d+) failed, (?P<queued>\d+) still queued, "
    r"[\d.]+s elapsed, [\d.]+ emails/s$",
    re.MULTILINE,
)


def test_demo_delivers_everything_it_queued(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DEMO_"))}
    env["DEMO_DB_PATH"] = str(tmp_path / "demo.sqlite3")
    env["DEMO_MEDIA_ROOT"] = str(tmp_path / "media")
    result = subprocess.run(
        [sys.executable, str(DEMO)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180
    )
    output = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, output
    assert "DEMO OK" in result.stdout, output
    assert "DeprecationWarning" not in result.stderr, output

    summary = SUMMARY.search(result.stdout)
    assert summary, output
    # Everything due was sent; the expired email and the refused one failed; the one scheduled for tomorrow waits.
    assert int(summary["sent"]) >= 300
    assert int(summary["failed"]) == 2
    assert int(summary["queued"]) == 1
    # The command's own progress display ran.
    assert "Running send_queued_mail --progress" in result.stdout
    assert re.search(r"\d+ sent, 1 failed, 0 requeued, 1 expired in [\d.]+s", result.stdout), output
    assert (tmp_path / "demo.sqlite3").exists()


def test_make_run_serves_the_demo_database():
    """``make run`` (manage.py with the example settings, no environment) opens the database the demo fills."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DEMO_"))}
    code = "from django.conf import settings; print(settings.DATABASES['default']['NAME'], settings.MEDIA_ROOT)"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=DEMO.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    database, media = result.stdout.strip().splitlines()[-1].split()
    demo_env = {"DEMO_DB_PATH": database, "DEMO_MEDIA_ROOT": media}
    assert Path(database) == DEMO.parent / "demo.sqlite3", demo_env
    assert Path(media) == DEMO.parent / "demo_media", demo_env
