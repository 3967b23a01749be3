"""Conversion, step 8 (the last): the worker and pause tables, the queue's indexes, SQLite's id counters."""

from django.db import migrations, models

from . import _conversion


class Migration(migrations.Migration):
    dependencies = [("post_office", "0021_convert_attachments_and_logs")]

    operations = [
        _conversion.CreateModelIfNeeded(
            name="DeliverySwitch",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(default="delivery", max_length=50, unique=True, verbose_name="name")),
                ("paused", models.BooleanField(default=False, verbose_name="paused")),
                ("changed", models.DateTimeField(auto_now=True, verbose_name="changed")),
                ("reason", models.CharField(blank=True, max_length=255, verbose_name="reason")),
            ],
            options={"verbose_name": "delivery switch", "verbose_name_plural": "delivery switches"},
        ),
        _conversion.CreateModelIfNeeded(
            name="WorkerHeartbeat",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=200, unique=True, verbose_name="worker")),
                ("hostname", models.CharField(max_length=255, verbose_name="host")),
                ("pid", models.PositiveIntegerField(verbose_name="process id")),
                ("started", models.DateTimeField(verbose_name="started")),
                ("last_seen", models.DateTimeField(db_index=True, verbose_name="last seen")),
                ("state", models.CharField(default="running", max_length=32, verbose_name="state")),
                ("sent", models.PositiveBigIntegerField(default=0, verbose_name="sent")),
                ("failed", models.PositiveBigIntegerField(default=0, verbose_name="failed")),
                ("requeued", models.PositiveBigIntegerField(default=0, verbose_name="requeued")),
            ],
            options={
                "verbose_name": "worker heartbeat",
                "verbose_name_plural": "worker heartbeats",
                "ordering": ["-last_seen"],
            },
        ),
        migrations.CreateModel(
            name="DeliveryHealth",
            fields=[],
            options={
                "verbose_name": "delivery health",
                "verbose_name_plural": "delivery health",
                "proxy": True,
                "default_permissions": (),
                "indexes": [],
                "constraints": [],
            },
            bases=("post_office.workerheartbeat",),
        ),
        _conversion.AddIndexIfNeeded(
            model_name="email",
            index=models.Index(fields=["status", "priority", "scheduled_time"], name="post_office_email_queue"),
        ),
        _conversion.AddIndexIfNeeded(
            model_name="email",
            index=models.Index(fields=["status", "lease_expires_at"], name="post_office_email_lease"),
        ),
        _conversion.AddIndexIfNeeded(
            model_name="email", index=models.Index(fields=["priority", "id"], name="post_office_email_priority")
        ),
        _conversion.AddIndexIfNeeded(
            model_name="email", index=models.Index(fields=["backend_alias", "id"], name="post_office_email_backend")
        ),
        _conversion.AddIndexIfNeeded(
            model_name="email", index=models.Index(fields=["language", "id"], name="post_office_email_language")
        ),
        _conversion.AddIndexIfNeeded(
            model_name="email", index=models.Index(fields=["scheduled_time"], name="post_office_email_scheduled")
        ),
        _conversion.AlignOldColumns(),
        _conversion.RepairSchema(),
        migrations.RunPython(_conversion.restore_sqlite_sequences, _conversion.noop),
    ]
