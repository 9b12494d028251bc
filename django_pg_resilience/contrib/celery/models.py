"""The job-key table (one row per unit of work that committed) and the parked jobs."""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class JobRecord(models.Model):
    """A unit of work that took effect, written in the same transaction as its writes.

    Its presence is the proof the unit committed: a re-run finds it and returns
    ``outcome`` instead of running again. Pruned by ``manage.py prune_job_records``.
    """

    #: The scope (the task's name unless shared) and the key's parts, each
    #: length-prefixed: see ``once.job_key``.
    key = models.CharField(max_length=255, primary_key=True)
    task = models.CharField(max_length=255, blank=True, default="")
    outcome = models.JSONField(null=True, blank=True)
    #: When the unit that committed began: what retention counts from.
    recorded_at = models.DateTimeField(db_index=True)
    #: Written by 0.1.0.dev0: ``key`` is the parts joined with ``:``, unscoped.
    #: Looked up by its old form until pruned (see ``once._legacy_outcome``).
    legacy_key = models.BooleanField(default=False)

    class Meta:
        verbose_name = _("job record")
        verbose_name_plural = _("job records")
        indexes = [
            models.Index(
                fields=["key"],
                name="pg_resilience_job_legacy",
                condition=models.Q(legacy_key=True),
            )
        ]

    def __str__(self) -> str:
        return self.key


class ParkedJob(models.Model):
    """A job whose outage budget ran out: it did not take effect, and waits for an operator.

    Written once per Celery task id when ``JOB_OUTAGE_BUDGET`` has passed since
    the job's first outage failure; the task then fails with
    ``OutageBudgetExceeded``. The admin's replay action sends it again (a new
    task, a new budget); its job key makes that a no-op if the job had in fact
    committed.
    """

    task = models.CharField(_("task"), max_length=255, db_index=True)
    #: The parked Celery task's id (unique: a redelivered message parks once).
    task_id = models.CharField(_("task id"), max_length=255, unique=True)
    args = models.JSONField(_("arguments"), default=list, blank=True)
    kwargs = models.JSONField(_("keyword arguments"), default=dict, blank=True)
    #: The job's stored key (``JobRecord.key``), "" for a task without one.
    key = models.CharField(_("job key"), max_length=255, blank=True, default="")
    #: The queue the task came from; a replay goes back to it ("" : the task's default).
    queue = models.CharField(_("queue"), max_length=255, blank=True, default="")
    #: The job's first failure of the outage: what the budget counted from.
    first_failure = models.DateTimeField(_("first failure"))
    #: The last error, truncated, with the databases' passwords masked.
    last_error = models.TextField(_("last error"), blank=True, default="")
    parked_at = models.DateTimeField(_("parked at"), db_index=True)
    replayed_at = models.DateTimeField(_("replayed at"), null=True, blank=True)
    #: The id of the task the replay sent.
    replay_task_id = models.CharField(_("replay task id"), max_length=255, blank=True, default="")

    class Meta:
        verbose_name = _("parked job")
        verbose_name_plural = _("parked jobs")
        ordering = ["-parked_at"]
        permissions = [("replay_parkedjob", _("Can replay parked jobs"))]

    def __str__(self) -> str:
        return f"{self.task}[{self.task_id}]"
