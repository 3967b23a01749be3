"""The publishing side of the real-worker Celery tests: the test process sends shared tasks through this app."""

from __future__ import annotations

from celery import Celery


def open_publisher(name: str, broker: str, label: str) -> Celery:
    """A Celery app on ``broker``, made current; AssertionError (naming ``label``) when the broker cannot be reached."""
    app = Celery(name, broker=broker, set_as_current=True)
    app.conf.broker_connection_retry_on_startup = True
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as error:
        app.close()
        raise AssertionError(f"{label} at {broker} cannot be reached: {error}") from error
    return app
