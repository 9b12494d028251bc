"""Body-digest dedup scoped by (source, body, account, topic); the strict rule per view.

The unique indexes are built ``CONCURRENTLY`` (the migration is not atomic):
on a table with rows, webhook deliveries keep being stored while they build.
The new scope index cannot fail on existing rows: the index it replaces was
unique on (source, body_sha256), a subset of its columns. Not atomic, a
migrate interrupted half-way leaves part of it applied: every step can run
again (columns added if missing, an invalid index left by a failed build
dropped first), so running ``migrate`` again completes it.
"""

from django.db import migrations, models

TABLE = "django_pg_resilience_webhookevent"


def _build(name: str, columns: str, where: str) -> tuple[str, ...]:
    return (
        f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"',
        f'CREATE UNIQUE INDEX CONCURRENTLY "{name}" ON "{TABLE}" ({columns}) WHERE {where}',
    )


SCOPE = _build(
    "pg_resilience_webhook_body_scope",
    '"source", "body_sha256", "account", "topic"',
    "NOT (\"body_sha256\" = '')",
)
STRICT = _build(
    "pg_resilience_webhook_body_strict",
    '"source", "body_sha256"',
    '(NOT ("body_sha256" = \'\') AND "body_strict")',
)


def _add_flag(name: str) -> migrations.RunSQL:
    # The default stays in the table: rows written by an older release (a
    # rolling deploy) get false, not NULL.
    return migrations.RunSQL(
        f'ALTER TABLE "{TABLE}" ADD COLUMN IF NOT EXISTS "{name}" boolean DEFAULT false NOT NULL',
        reverse_sql=f'ALTER TABLE "{TABLE}" DROP COLUMN IF EXISTS "{name}"',
    )


OLD = _build("pg_resilience_webhook_body", '"source", "body_sha256"', "NOT (\"body_sha256\" = '')")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("django_pg_resilience", "0002_webhook_hardening"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[_add_flag("body_replayed"), _add_flag("body_strict")],
            state_operations=[
                migrations.AddField(
                    model_name="webhookevent",
                    name="body_replayed",
                    field=models.BooleanField(default=False),
                ),
                migrations.AddField(
                    model_name="webhookevent",
                    name="body_strict",
                    field=models.BooleanField(default=False),
                ),
            ],
        ),
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    SCOPE,
                    reverse_sql=[
                        'DROP INDEX CONCURRENTLY IF EXISTS "pg_resilience_webhook_body_scope"'
                    ],
                ),
                migrations.RunSQL(
                    STRICT,
                    reverse_sql=[
                        'DROP INDEX CONCURRENTLY IF EXISTS "pg_resilience_webhook_body_strict"'
                    ],
                ),
                migrations.RunSQL(
                    'DROP INDEX CONCURRENTLY IF EXISTS "pg_resilience_webhook_body"',
                    reverse_sql=OLD,
                ),
            ],
            state_operations=[
                migrations.RemoveConstraint(
                    model_name="webhookevent",
                    name="pg_resilience_webhook_body",
                ),
                migrations.AddConstraint(
                    model_name="webhookevent",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(("body_sha256", ""), _negated=True),
                        fields=("source", "body_sha256", "account", "topic"),
                        name="pg_resilience_webhook_body_scope",
                    ),
                ),
                migrations.AddConstraint(
                    model_name="webhookevent",
                    constraint=models.UniqueConstraint(
                        condition=models.Q(
                            models.Q(("body_sha256", ""), _negated=True), ("body_strict", True)
                        ),
                        fields=("source", "body_sha256"),
                        name="pg_resilience_webhook_body_strict",
                    ),
                ),
            ],
        ),
    ]
