"""The admin of a record the package keeps as evidence: read it, and act on it only by replaying.

Webhook events and parked jobs say what a sender delivered or what an outage stopped: every
field is read-only, nobody adds or edits one, and the replay action (which runs handlers or
sends tasks) needs a permission of its own, or the model's change permission.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

__all__ = ["ReplayOnlyAdmin"]


class ReplayOnlyAdmin(admin.ModelAdmin):
    """A read-only ModelAdmin whose one action, "replay", needs ``replay_permission``."""

    #: The codename of the model's replay permission (``Meta.permissions``).
    replay_permission: str = ""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_replay_permission(self, request: HttpRequest) -> bool:
        """Replaying acts (runs handlers, sends tasks): view-only staff may not."""
        label = self.model._meta.app_label
        change = f"{label}.change_{self.model._meta.model_name}"
        return request.user.has_perm(f"{label}.{self.replay_permission}") or (
            request.user.has_perm(change)
        )
