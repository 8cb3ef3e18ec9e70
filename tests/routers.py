"""Routes the test app's ``OtherDatabaseExecution`` and ``OtherDatabaseRecord`` proxies to the
``other`` alias."""

from __future__ import annotations

from typing import Any

OTHER = "other"


class OtherDatabaseRouter:
    def _route(self, model: type[Any]) -> str | None:
        routed = ("otherdatabaseexecution", "otherdatabaserecord")
        return OTHER if model._meta.model_name in routed else None

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        return self._route(model)

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        return self._route(model)
