from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "benchproject"
    label = "bench"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import lookup_first, two_step

        lookup_first.install()
        two_step.install()
