"""The job-key table: one row per unit of work that committed, holding its outcome."""

from __future__ import annotations

from django.db import models


class JobRecord(models.Model):
    """A unit of work that took effect, written in the same transaction as its writes.

    Its presence is the proof the unit committed: a re-run finds it and returns
    ``outcome`` instead of running again. Pruned by ``manage.py prune_job_records``.
    """

    key = models.CharField(max_length=255, primary_key=True)
    task = models.CharField(max_length=255, blank=True, default="")
    outcome = models.JSONField(null=True, blank=True)
    #: When the unit that committed began: what retention counts from.
    recorded_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "job record"
        verbose_name_plural = "job records"

    def __str__(self) -> str:
        return self.key
