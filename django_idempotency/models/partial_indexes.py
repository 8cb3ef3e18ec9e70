"""Django's warnings about the models' partial indexes on MySQL/MariaDB, answered.

InnoDB has no partial index, so Django warns that it leaves a conditional ``UniqueConstraint``
out (``models.W036``) and builds a conditional ``Index`` whole (``models.W037``). For this
app's models both are handled: migration 0008 builds the unique rules another way (a generated
column), and the whole indexes serve the admin as the partial ones would. The models drop just
these two warnings about themselves, so a project's own models keep theirs.
"""

from __future__ import annotations

from typing import Any

ANSWERED = frozenset({"models.W036", "models.W037"})


def without_answered(messages: list[Any]) -> list[Any]:
    return [message for message in messages if message.id not in ANSWERED]
