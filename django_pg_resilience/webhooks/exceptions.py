"""Why a webhook delivery was turned away before it reached the database."""

from __future__ import annotations

__all__ = ["WebhookRejected"]


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
