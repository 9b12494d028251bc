"""Why a webhook delivery was turned away before it reached the database."""

from __future__ import annotations

__all__ = ["NO_SECRET_CODE", "DeliveryInFlight", "WebhookRejected"]

#: The refusal code (401) of a view left with no usable signing secret.
NO_SECRET_CODE = "no_secret"  # noqa: S105 - a refusal code, not a secret


class WebhookRejected(Exception):
    """A delivery is refused with ``status`` and a short machine-readable ``code``.

    Raised by verifiers and by the view's override points (``verify``,
    ``get_idempotency_key``...). The response is ``{"error": code}``; the
    message is for the log and never holds a secret or a signature.
    """

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.status = status
        self.code = code


def unauthorized(code: str, message: str = "") -> WebhookRejected:
    return WebhookRejected(401, code, message)


def bad_request(code: str, message: str = "") -> WebhookRejected:
    return WebhookRejected(400, code, message)


class DeliveryInFlight(Exception):
    """Another delivery of the same event still holds it past ``WEBHOOK_LOCK_TIMEOUT``.

    The view answers 503 with ``Retry-After``: the sender retries once the
    first delivery has finished, and gets "duplicate" (or processes the event
    if the first one failed).
    """

    def __init__(self, source: str, key: str) -> None:
        super().__init__(f"{source} {key} is being processed by another delivery")
        self.source = source
        self.key = key
