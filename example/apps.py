from django.apps import AppConfig


class ExampleConfig(AppConfig):
    name = "example"
    verbose_name = "post_office example project"
    default_auto_field = "django.db.models.BigAutoField"
