"""Differences between the Django versions this app supports, decided once."""

from __future__ import annotations

import django

#: Django 6.1: ``MAILERS``, backends built with an ``alias``, ``MIMEPart`` messages.
DJANGO_61 = django.VERSION >= (6, 1)
