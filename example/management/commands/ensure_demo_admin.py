"""Create the demo superuser admin / admin if it does not exist, and say how to log in."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

USERNAME = "admin"
PASSWORD = "admin"  # a local demo account only


class Command(BaseCommand):
    help = "Create the superuser admin/admin for the example project if it is missing."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/admin/", help="Where the admin will be served.")

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        if User.objects.filter(username=USERNAME).exists():
            self.stdout.write(f"Superuser {USERNAME!r} already exists.")
        else:
            User.objects.create_superuser(USERNAME, "admin@example.com", PASSWORD)
            self.stdout.write(self.style.SUCCESS(f"Created superuser {USERNAME!r}."))
        self.stdout.write(f"Log in at {options['url']} as {USERNAME} / {PASSWORD}")
