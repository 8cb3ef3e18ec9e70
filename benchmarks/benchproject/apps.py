from django.apps import AppConfig


class BenchConfig(AppConfig):
    name = "benchproject"
    label = "bench"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import before_issue24, lookup_first, one_statement

        lookup_first.install()
        before_issue24.install()
        one_statement.install()
