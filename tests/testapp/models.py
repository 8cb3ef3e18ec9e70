from django.db import models

from django_idempotency.models import IdempotencyRecord


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


class OtherDatabaseRecord(IdempotencyRecord):
    """A proxy of the store's record (as a project's admin might add), routed to ``other`` by
    ``tests.routers.OtherDatabaseRouter``: a purge through it goes where the router says."""

    class Meta:
        proxy = True
