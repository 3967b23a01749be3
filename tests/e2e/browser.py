"""A real browser on a live test server: Playwright for Python driving Debian's Chromium, headless.

Every test logs in through the login page, records each request the browser
makes to a host other than the live server (and blocks it), collects console
messages, and saves a screenshot of every screen it looks at in
``e2e-screenshots/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.models import Permission, User
from django.contrib.staticfiles.testing import StaticLiveServerTestCase
from django.db import connection

from tests.smtp_sink import SMTPSink

ROOT = Path(__file__).resolve().parent.parent.parent
SCREENSHOTS = ROOT / "e2e-screenshots"
CHROMIUM = os.environ.get("POST_OFFICE_CHROMIUM", "/usr/bin/chromium")
#: The SMTP server of the tests refuses every recipient at this domain (550).
REFUSED_DOMAIN = "nowhere.example.com"


class BrowserTestCase(StaticLiveServerTestCase):
    """A live server, a Chromium page at 1,280 × 800, a real SMTP server for the worker."""

    host = "127.0.0.1"
    playwright: Any
    browser: Any

    @classmethod
    def setUpClass(cls) -> None:
        # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make are not async.
        os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
        super().setUpClass()
        from playwright.sync_api import sync_playwright

        cls.playwright = sync_playwright().start()
        cls.browser = cls.playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        # The port tests/e2e/settings.py gave the live server and the workers.
        port = int(os.environ["POST_OFFICE_TEST_SMTP_PORT"])
        cls.sink = SMTPSink(port=port, refuse_domains=(REFUSED_DOMAIN,)).start()
        SCREENSHOTS.mkdir(exist_ok=True)

    @classmethod
    def tearDownClass(cls) -> None:
        cls.sink.stop()
        cls.browser.close()
        cls.playwright.stop()
        super().tearDownClass()

    def setUp(self) -> None:
        self.admin = User.objects.create_superuser("admin", "admin@example.com", "admin-pw")
        self.viewer = User.objects.create_user("viewer", "viewer@example.com", "viewer-pw", is_staff=True)
        self.viewer.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
        self.context = self.browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-US")
        #: Requests the browser tried to make to any host but the live server (all blocked).
        self.remote_requests: list[str] = []
        self.console: list[str] = []
        self.context.route("**/*", self._only_local)
        self.page = self.context.new_page()
        self.page.on("console", lambda message: self.console.append(message.text))
        self.page.on("dialog", lambda dialog: self.console.append(f"dialog: {dialog.message}"))
        self.sink.messages.clear()

    def tearDown(self) -> None:
        self.context.close()

    def _only_local(self, route: Any) -> None:
        url = route.request.url
        host = urlsplit(url).hostname
        if url.startswith(("data:", "about:", "blob:")) or host == self.host:
            route.continue_()
        else:
            self.remote_requests.append(url)
            route.abort()

    # -- steps a person takes --------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"{self.live_server_url}{path}"

    def go(self, path: str) -> None:
        self.page.goto(self.url(path))

    def login(self, username: str = "admin", password: str = "admin-pw") -> None:
        self.go("/admin/login/?next=/admin/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password)
        self.page.click("input[type=submit]")
        self.page.wait_for_url(re.compile(r".*/admin/$"))

    def shot(self, name: str) -> None:
        """A full-page screenshot for a person to look at (e2e-screenshots/<test>--<name>.png)."""
        self.page.screenshot(path=str(SCREENSHOTS / f"{self._testMethodName}--{name}.png"), full_page=True)

    def messages(self) -> str:
        """The admin's message list ('… will be retried', warnings), as text."""
        return " ".join(self.page.locator("ul.messagelist li").all_inner_texts())

    def fits_the_screen(self) -> bool:
        """Nothing wider than the 1,280-px window: no horizontal scrolling."""
        return bool(self.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))

    def run_worker(self) -> str:
        """``manage.py send_queued_mail``, as cron runs it, delivering to the SMTP server; its output."""
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.e2e.settings",
            "POST_OFFICE_TEST_DB": "sqlite",
            "POST_OFFICE_DB_NAME": str(connection.settings_dict["NAME"]),
            "POST_OFFICE_TEST_SMTP_PORT": str(self.sink.port),
        }
        result = subprocess.run(
            [sys.executable, "manage.py", "send_queued_mail"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        return result.stdout + result.stderr
