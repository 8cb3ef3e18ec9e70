"""The errors the idempotency layer answers with, each rendered as RFC 9457 problem+json."""

from __future__ import annotations

from .conf import app_settings


class IdempotencyError(Exception):
    """Base class: a refusal with a stable ``default_code`` that becomes the problem ``type``."""

    status_code: int = 400
    default_code: str = "idempotency-error"
    title: str = "Idempotency error"
    default_detail: str = "The request could not be handled idempotently."

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        self.detail = detail or self.default_detail
        self.headers = dict(headers or {})
        super().__init__(self.detail)

    def get_status_code(self) -> int:
        return self.status_code


class InvalidKey(IdempotencyError):
    default_code = "invalid-idempotency-key"
    title = "Invalid Idempotency-Key"
    default_detail = "The Idempotency-Key header is not a valid key."


class MissingKey(IdempotencyError):
    default_code = "missing-idempotency-key"
    title = "Idempotency-Key required"
    default_detail = "This endpoint requires an Idempotency-Key header."


class AuthenticationRequired(IdempotencyError):
    status_code = 403
    default_code = "idempotency-key-requires-authentication"
    title = "Idempotency-Key needs an authenticated client"
    default_detail = (
        "Idempotency keys are scoped to the authenticated client; "
        "authenticate, or send the request without a key."
    )


class PayloadTooLarge(IdempotencyError):
    status_code = 413
    default_code = "payload-too-large"
    title = "Request body too large"
    default_detail = "The request body exceeds the size this server accepts."


class KeyMismatch(IdempotencyError):
    default_code = "idempotency-key-mismatch"
    title = "Idempotency-Key reused with a different request"
    default_detail = (
        "This Idempotency-Key was already used with a different request body, method or path. "
        "Use a new key for a new request."
    )

    def get_status_code(self) -> int:
        return app_settings.MISMATCH_STATUS


class RequestInFlight(IdempotencyError):
    status_code = 409
    default_code = "idempotency-request-in-flight"
    title = "Original request still in progress"
    default_detail = (
        "A request with this Idempotency-Key is still being processed. "
        "Retry after the time given in Retry-After."
    )

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None):
        seconds = app_settings.RETRY_AFTER if retry_after is None else retry_after
        super().__init__(detail, headers={"Retry-After": str(seconds)})


class ReferenceConflict(IdempotencyError):
    status_code = 409
    default_code = "idempotency-reference-conflict"
    title = "Operation already performed"

    def __init__(self, reference: str):
        self.reference = reference
        super().__init__(
            f"The operation on {reference!r} was already performed by an earlier request "
            "with a different Idempotency-Key and different content."
        )


class ReferenceHeld(ReferenceConflict):
    """The reference is held by a success whose stored response has since been purged."""

    def __init__(self, reference: str):
        self.reference = reference
        IdempotencyError.__init__(
            self,
            f"The operation on {reference!r} was already performed by an earlier request. "
            "Its response is no longer stored, so it cannot be replayed.",
        )


class ResponseNotStorable(IdempotencyError):
    """The view's answer cannot be stored, so its effects were rolled back (a server fault)."""

    status_code = 500
    default_code = "idempotency-response-not-storable"
    title = "Response could not be stored"


class DatabaseUnavailable(IdempotencyError):
    """The database went away mid-request; nothing was stored, so the retry runs afresh."""

    status_code = 503
    default_code = "database-unavailable"
    title = "Database unavailable"
    default_detail = (
        "The database connection failed while handling the request; nothing was stored. "
        "Retry the same request with the same Idempotency-Key."
    )

    def __init__(self, detail: str | None = None):
        super().__init__(detail, headers={"Retry-After": str(app_settings.RETRY_AFTER)})


class KeyNotSupported(IdempotencyError):
    """A key on an unsafe route the layer does not wrap: refused rather than silently ignored."""

    default_code = "idempotency-key-not-supported"
    title = "Idempotency-Key not supported here"
    default_detail = (
        "This endpoint does not process requests idempotently, so an Idempotency-Key would "
        "give no protection. Send the request without the header."
    )


class InvalidIssuedKey(IdempotencyError):
    """A key that should have come from the server does not verify: tampered, foreign, made up."""

    default_code = "invalid-issued-key"
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
