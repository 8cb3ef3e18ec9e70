from django.db import models


class Execution(models.Model):
    """One row per real run of a test view: counting rows counts executions."""

    label = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.label


class OtherDatabaseExecution(Execution):
    """Routed to the ``other`` database alias by ``tests.routers.OtherDatabaseRouter``."""

    class Meta:
        proxy = True
