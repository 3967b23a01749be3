"""The test settings as a real project runs the admin: static files served, CSRF checked, clickjacking headers."""

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, MIDDLEWARE

INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.staticfiles"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    *MIDDLEWARE[:1],  # sessions
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    *MIDDLEWARE[1:],  # auth, messages
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
STATIC_URL = "/static/"
USE_I18N = True
LANGUAGE_CODE = "en"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
