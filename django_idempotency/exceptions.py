"""The errors the idempotency layer answers with, each rendered as RFC 9457 problem+json."""

from __future__ import annotations

from typing import Literal

from .conf import app_settings

#: What a client may safely do after a refusal (the HTML refusal page offers only that):
#: ``"new"``: the view never ran and the key cannot have been used, so a new request (a fresh
#: form, a new key) is safe; ``"same"``: send this very request again, same key and data, and
#: nothing else (it may be running, or have run); ``"none"``: an earlier request already
#: performed the operation, so do not send it again: look up that result.
Retry = Literal["new", "same", "none"]


class IdempotencyError(Exception):
    """Base class: a refusal with a stable ``default_code`` that becomes the problem ``type``."""

    status_code: int = 400
    default_code: str = "idempotency-error"
    title: str = "Idempotency error"
    default_detail: str = "The request could not be handled idempotently."
    #: Fail safe: resending the same request under the same key can never run it twice.
    retry: Retry = "same"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        retry: Retry | None = None,
    ):
        self.detail = detail or self.default_detail
        self.headers = dict(headers or {})
        if retry is not None:
            self.retry = retry
        super().__init__(self.detail)

    def get_status_code(self) -> int:
        return self.status_code


class InvalidKey(IdempotencyError):
    default_code = "invalid-idempotency-key"
    retry: Retry = "new"
    title = "Invalid Idempotency-Key"
    default_detail = "The Idempotency-Key header is not a valid key."


class MissingKey(IdempotencyError):
    default_code = "missing-idempotency-key"
    retry: Retry = "new"
    title = "Idempotency-Key required"
    default_detail = "This endpoint requires an Idempotency-Key header."


class AuthenticationRequired(IdempotencyError):
    status_code = 403
    default_code = "idempotency-key-requires-authentication"
    title = "Idempotency-Key needs an authenticated client"
    default_detail = (
        "Idempotency keys are scoped to the authenticated client; nothing was performed for "
        "this request. Authenticate and send it again with the same key. Without a key it is "
        "not protected: send it so only if no earlier attempt of it can have been performed."
    )


class PayloadTooLarge(IdempotencyError):
    status_code = 413
    default_code = "payload-too-large"
    retry: Retry = "new"
    title = "Request body too large"
    default_detail = "The request body exceeds the size this server accepts."


class KeyMismatch(IdempotencyError):
    default_code = "idempotency-key-mismatch"
    title = "Idempotency-Key reused with a different request"
    default_detail = (
        "This Idempotency-Key was already used with a different request body, method or path; "
        "that request was handled and its answer stored, this one was not performed. To retry "
        "it, send exactly the original request again; use a new key only for a new operation."
    )
    retry: Retry = "none"

    def get_status_code(self) -> int:
        return app_settings.MISMATCH_STATUS


class RequestInFlight(IdempotencyError):
    status_code = 409
    default_code = "idempotency-request-in-flight"
    title = "Original request still in progress"
    default_detail = (
        "A request with this Idempotency-Key is still being processed. Send this same request "
        "again, with the same key, after the time given in Retry-After: you will get the "
        "original's answer. A new key would perform the operation a second time."
    )

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None):
        seconds = app_settings.RETRY_AFTER if retry_after is None else retry_after
        super().__init__(detail, headers={"Retry-After": str(seconds)})


class ReferenceConflict(IdempotencyError):
    status_code = 409
    default_code = "idempotency-reference-conflict"
    title = "Operation already performed"
    retry: Retry = "none"

    def __init__(self, reference: str):
        self.reference = reference
        super().__init__(
            f"The operation on {reference!r} was already performed by an earlier request "
            "with a different Idempotency-Key and different content; this one was not. "
            "Look up the earlier result; do not send this request again."
        )


class ReferenceHeld(ReferenceConflict):
    """The reference is held by a success whose stored response has since been purged."""

    def __init__(self, reference: str):
        self.reference = reference
        IdempotencyError.__init__(
            self,
            f"The operation on {reference!r} was already performed by an earlier request; "
            "this one was not. Its response is no longer stored, so it cannot be replayed: "
            "look up the earlier result; do not send this request again.",
        )


class ResponseNotStorable(IdempotencyError):
    """The view's answer cannot be stored, so its effects were rolled back (a server fault)."""

    status_code = 500
    default_code = "idempotency-response-not-storable"
    title = "Response could not be stored"
    default_detail = (
        "The response could not be stored for replay, so the operation was rolled back. "
        "A server fault: report it."
    )


class DatabaseUnavailable(IdempotencyError):
    """The database went away mid-request: the same request under the same key is the only
    safe retry (it replays if the commit landed after all, and runs if nothing was stored)."""

    status_code = 503
    default_code = "database-unavailable"
    title = "Database unavailable"
    default_detail = (
        "The database connection failed while handling the request. Retry the same request "
        "with the same Idempotency-Key after the time given in Retry-After: if it was "
        "performed, you get its answer; if not, it runs."
    )

    def __init__(self, detail: str | None = None):
        super().__init__(detail, headers={"Retry-After": str(app_settings.RETRY_AFTER)})


class KeyNotSupported(IdempotencyError):
    """A key on an unsafe route the layer does not wrap: refused rather than silently ignored."""

    default_code = "idempotency-key-not-supported"
    retry: Retry = "new"
    title = "Idempotency-Key not supported here"
    default_detail = (
        "This endpoint does not process requests idempotently, so an Idempotency-Key would "
        "give no protection. Send the request without the header."
    )


class InvalidIssuedKey(IdempotencyError):
    """A key that should have come from the server does not verify: tampered, foreign, made up."""

    default_code = "invalid-issued-key"
    retry: Retry = "new"
    title = "Invalid issued Idempotency-Key"
    default_detail = (
        "This endpoint only accepts keys issued by this server to you for it; "
        "ask for a new key and send the request again."
    )


class IssuedKeyExpired(InvalidIssuedKey):
    """A genuine issued key too old to start an operation; a retry of one it started replays."""

    default_code = "issued-key-expired"
    title = "Issued Idempotency-Key expired"
    default_detail = (
        "The issued key is too old to start a new operation, and no request made with it is "
        "on record: nothing was carried out. Ask for a new key and send the request again."
    )
