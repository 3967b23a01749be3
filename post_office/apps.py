from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PostOfficeConfig(AppConfig):
    name = "post_office"
    label = "post_office"
    verbose_name = _("Post Office")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, django_tasks, tasks  # noqa: F401 - registers system checks and signal receivers
