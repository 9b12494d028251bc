"""prune_webhook_events, the admin's replay action, factories, system checks."""

from __future__ import annotations

import datetime
from io import StringIO
from typing import Any

import pytest
from django.contrib.admin.sites import site
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.utils import timezone

from django_pg_resilience.checks.webhooks import webhook_check_messages
from django_pg_resilience.models import WebhookEvent
from django_pg_resilience.testing.webhooks import WebhookEventFactory
from tests.testapp.models import Item
from tests.webhooks.views import calls

Status = WebhookEvent.Status


@pytest.mark.django_db
def test_prune_deletes_old_finished_events_in_batches() -> None:
    old = timezone.now() - datetime.timedelta(days=40)
    WebhookEventFactory.create_batch(5, received_at=old)
    WebhookEventFactory.create_batch(2, received_at=old, status=Status.FAILED)
    WebhookEventFactory.create(received_at=old, status=Status.PENDING)
    WebhookEventFactory.create_batch(3)  # recent

    out = StringIO()
    call_command("prune_webhook_events", "--older-than", "30d", "--batch-size", "2", stdout=out)

    assert "7 webhook events deleted" in out.getvalue()
    assert WebhookEvent.objects.count() == 4
    assert WebhookEvent.objects.filter(status=Status.PENDING).count() == 1
    with pytest.raises(CommandError, match="not an age"):
        call_command("prune_webhook_events", "--older-than", "soon")


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="tests.webhooks.urls_admin")
def test_admin_lists_events_and_replays_failed_ones(client: Client) -> None:
    failed = WebhookEventFactory.create(
        key="replay-me", status=Status.FAILED, handler="tests.webhooks.views.ShopifyOrders"
    )
    done = WebhookEventFactory.create(key="already-done")
    admin_user = User.objects.create_superuser("admin", "a@example.com", "pw")
    client.force_login(admin_user)

    listing = client.get("/admin/django_pg_resilience/webhookevent/?status__exact=failed")
    assert listing.status_code == 200 and b"replay-me" in listing.content
    assert b"already-done" not in listing.content

    response = client.post(
        "/admin/django_pg_resilience/webhookevent/",
        {"action": "replay_failed", "_selected_action": [failed.pk, done.pk]},
    )
    assert response.status_code == 302
    failed.refresh_from_db()
    assert failed.status == Status.SUCCEEDED and failed.attempts == 2
    assert calls.keys == ["replay-me"]  # the succeeded one was not replayed
    assert Item.objects.filter(name="shopify:replay-me").count() == 1
    assert site.is_registered(WebhookEvent)


@override_settings(ROOT_URLCONF="tests.webhooks.urls_misconfigured")
def test_checks_report_misconfigured_views() -> None:
    ids = sorted(message.id for message in webhook_check_messages())
    assert ids == [
        "pg_resilience.E301",
        "pg_resilience.E302",
        "pg_resilience.E303",
        "pg_resilience.E304",
        "pg_resilience.E305",
    ]


@override_settings(
    ROOT_URLCONF="tests.webhooks.urls",
    PG_RESILIENCE={"WEBHOOK_MAX_BODY_SIZE": 10_000_000},
)
def test_checks_pass_for_good_views_and_warn_about_body_size() -> None:
    assert [m.id for m in webhook_check_messages()] == ["pg_resilience.W301"]


def _staff(username: str, *codenames: str) -> User:
    from django.contrib.auth.models import Permission

    user = User.objects.create_user(username, f"{username}@example.com", "pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="django_pg_resilience", codename__in=codenames
        )
    )
    return user


def _replay(client: Client, pk: int) -> Any:
    return client.post(
        "/admin/django_pg_resilience/webhookevent/",
        {"action": "replay_failed", "_selected_action": [pk]},
        follow=True,
    )


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="tests.webhooks.urls_admin")
def test_view_only_staff_cannot_replay_handlers(client: Client) -> None:
    failed = WebhookEventFactory.create(
        key="not-yours", status=Status.FAILED, handler="tests.webhooks.views.ShopifyOrders"
    )
    client.force_login(_staff("viewer", "view_webhookevent"))

    assert client.get("/admin/django_pg_resilience/webhookevent/").status_code == 200
    _replay(client, failed.pk)

    failed.refresh_from_db()
    assert failed.status == Status.FAILED and calls.keys == []


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="tests.webhooks.urls_admin")
def test_the_replay_permission_allows_replaying(client: Client) -> None:
    failed = WebhookEventFactory.create(
        key="mine", status=Status.FAILED, handler="tests.webhooks.views.ShopifyOrders"
    )
    client.force_login(_staff("operator", "view_webhookevent", "replay_webhookevent"))

    _replay(client, failed.pk)

    failed.refresh_from_db()
    assert failed.status == Status.SUCCEEDED and calls.keys == ["mine"]


@pytest.mark.django_db
@override_settings(ROOT_URLCONF="tests.webhooks.urls_admin")
def test_replay_errors_mask_the_views_secrets(client: Client) -> None:
    from tests.webhooks.views import SHOPIFY_SECRET

    failed = WebhookEventFactory.create(
        key="leaky", status=Status.FAILED, handler="tests.webhooks.views.ShopifyOrders"
    )
    calls.fail_with = RuntimeError(f"token {SHOPIFY_SECRET} refused")
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))

    page = _replay(client, failed.pk)

    failed.refresh_from_db()
    assert SHOPIFY_SECRET not in failed.last_error and "***" in failed.last_error
    assert SHOPIFY_SECRET.encode() not in page.content and b"***" in page.content
