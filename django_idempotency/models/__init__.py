"""The app's models, one module per concept, each with its query logic on its QuerySet.

``records``: the key store (``IdempotencyRecord``) and its event log (``IdempotencyEvent``);
``purge``: how their expired rows go, in short batches; ``outbox``: task messages sent once
their transaction commits (``OutboxMessage``); ``deliveries``: how often a task's message came
back unfinished (``TaskDelivery``). Django's app registry and the migrations find the models
here.
"""

from .deliveries import TaskDelivery
from .outbox import OutboxMessage
from .records import IdempotencyEvent, IdempotencyRecord

__all__ = ["IdempotencyEvent", "IdempotencyRecord", "OutboxMessage", "TaskDelivery"]
