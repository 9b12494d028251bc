"""GeoDjango through ``django_pg_resilience.backend.postgis`` against a real PostGIS."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connections, models

from django_pg_resilience import stats
from django_pg_resilience.testing import LocalCluster
from django_pg_resilience.testing.cluster import postgis_missing
from django_pg_resilience.testing.django import database_alias
from tests.backend.conftest import fail_over
from tests.backend.test_failover import _reset_when_running

GIS_ENGINE = "django_pg_resilience.backend.postgis"
MISSING = postgis_missing()

pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"GeoDjango cannot run: {MISSING}")

if MISSING is None:
    from django.contrib.gis.db import models as gis_models
    from django.contrib.gis.geos import Point

    class Place(models.Model):
        name = models.CharField(max_length=50)
        location = gis_models.PointField(srid=4326)

        class Meta:
            app_label = "testapp"

        def __str__(self) -> str:
            return self.name


def _geo_alias(cluster: LocalCluster, **settings: Any) -> Any:
    return database_alias("geo", cluster.endpoint, engine=GIS_ENGINE, **settings)


def _create_places(alias: str) -> None:
    connection = connections[alias]
    connection.prepare_database()  # CREATE EXTENSION postgis, as Django's test runner does
    with connection.schema_editor() as editor:
        editor.create_model(Place)
    Place.objects.using(alias).create(name="lighthouse", location=Point(-4.5, 48.4, srid=4326))
    Place.objects.using(alias).create(name="harbour", location=Point(-4.49, 48.38, srid=4326))


def test_geometry_reads_ride_through_a_failover(cluster: LocalCluster) -> None:
    with _geo_alias(cluster):
        _create_places("geo")
        cluster.wait_for_replay(cluster.standbys[0])

        fail_over(cluster)

        # The reconnect registered GeoDjango's adapters on the new connection:
        # a geometry comes back as a GEOS object and a spatial lookup works.
        place = Place.objects.using("geo").get(name="lighthouse")
        assert isinstance(place.location, Point)
        assert (place.location.x, place.location.y, place.location.srid) == (-4.5, 48.4, 4326)
        near = Place.objects.using("geo").filter(
            location__dwithin=(Point(-4.5, 48.4, srid=4326), 0.05)
        )
        assert sorted(near.values_list("name", flat=True)) == ["harbour", "lighthouse"]
    assert stats.snapshot()["reconnects"]["geo"] >= 1


def test_a_geometry_read_in_flight_is_re_run(cluster: LocalCluster) -> None:
    with _geo_alias(cluster):
        _create_places("geo")
        resetter = threading.Thread(target=_reset_when_running, args=(cluster, "geo_marker"))
        resetter.start()
        with connections["geo"].cursor() as cursor:
            cursor.execute(
                "SELECT 'geo_marker', pg_sleep(0.5), ST_AsText(location) "
                "FROM testapp_place WHERE name = %s",
                ["lighthouse"],
            )
            assert cursor.fetchone()[2] == "POINT(-4.5 48.4)"
        resetter.join()
    assert stats.snapshot()["retries"]["geo"] >= 1
