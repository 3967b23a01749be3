"""What the switch tests share (tests/switch for django-post_office, tests/switch_mailer for django-mailer).

A :class:`SwitchProject` is one database on one server (or a SQLite file), the project's files beside
it, and the commands run against it, each with the interpreter of the virtualenv it belongs to
(the other app's, or ours). Subclasses say which environment the project's settings read.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TIMEOUT = 300


def postgres_server() -> Any:
    import psycopg

    return psycopg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=os.environ.get("PGPORT", "5432"),
        user=os.environ.get("PGUSER", "postgres"),
        dbname="postgres",
        autocommit=True,
    )


def mysql_server() -> Any:
    import pymysql

    return pymysql.connect(
        host=os.environ.get("MYSQL_HOST", "127.0.0.1"),
        port=int(os.environ.get("MYSQL_PORT", "3306")),
        user=os.environ.get("MYSQL_USER", "root"),
        password=os.environ.get("MYSQL_PASSWORD", ""),
        autocommit=True,
    )


@dataclass
class SwitchProject:
    vendor: str
    name: str
    workdir: Path
    outputs: dict[str, str] = field(default_factory=dict)

    #: The project's directory (its manage.py), set by each subclass.
    directory = Path()

    @property
    def db_name(self) -> str:
        return str(self.workdir / f"{self.name}.sqlite3") if self.vendor == "sqlite" else self.name

    def env(self, python: Path, **extra: str) -> dict[str, str]:
        raise NotImplementedError

    def create(self) -> None:
        self.drop()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.vendor == "postgres":
            with postgres_server() as connection:
                connection.execute(f'CREATE DATABASE "{self.name}"')
        elif self.vendor == "mysql":
            with mysql_server() as connection, connection.cursor() as cursor:
                cursor.execute(f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")

    def drop(self) -> None:
        if self.vendor == "postgres":
            with postgres_server() as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        elif self.vendor == "mysql":
            with mysql_server() as connection, connection.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{self.name}`")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def run(self, label: str, python: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """Run a script of the project (or manage.py) with this interpreter; keep its output under ``label``."""
        result = subprocess.run(
            [str(python), *args],
            cwd=self.directory,
            env=self.env(python, **extra_env),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        self.outputs[label] = f"$ {' '.join(args)}  (exit {result.returncode})\n{result.stdout}{result.stderr}"
        return result

    def ok(self, label: str, python: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        """:meth:`run`, failing the test when the command fails."""
        result = self.run(label, python, *args, **extra_env)
        if result.returncode != 0:
            pytest.fail(f"{self.vendor}: {label} failed:\n{self.outputs[label]}", pytrace=False)
        return result
