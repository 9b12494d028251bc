"""Job keys are scoped to their task and length-prefixed (see ``once.job_key``).

Keys written before cannot be rewritten (joining the parts with ":" lost where
they began), so every existing row is marked ``legacy_key`` and found by its old
form until it is pruned; new rows are never legacy.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("pg_resilience_celery", "0001_initial")]

    operations = [
        # The default fills the rows that exist now; new rows say False themselves.
        migrations.AddField(
            model_name="jobrecord",
            name="legacy_key",
            field=models.BooleanField(default=True),
        ),
        migrations.AlterField(
            model_name="jobrecord",
            name="legacy_key",
            field=models.BooleanField(default=False),
        ),
        migrations.AddIndex(
            model_name="jobrecord",
            index=models.Index(
                condition=models.Q(("legacy_key", True)),
                fields=["key"],
                name="pg_resilience_job_legacy",
            ),
        ),
    ]
