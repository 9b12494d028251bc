"""The SQL Django's ORM really sends, for a broad set of querysets: every read is a read.

The querysets run against the session's PostgreSQL; the statements are caught on
their way to the backend's cursor (as ``is_read_statement`` sees them, with
placeholders) and as the server receives them (parameters bound client-side).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.postgres.aggregates import ArrayAgg, BoolAnd, BoolOr, JSONBAgg, StringAgg
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.functions import RandomUUID, TransactionNow
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.db import connection, models, transaction
from django.db.models import (
    Avg,
    Case,
    Count,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    Min,
    OuterRef,
    Prefetch,
    Q,
    StdDev,
    Subquery,
    Sum,
    Value,
    Variance,
    When,
    Window,
)
from django.db.models import functions as fn
from django.db.models.fields.json import KT

from django_pg_resilience.backend.statements import is_read_statement
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db


class Shelf(models.Model):
    label = models.CharField(max_length=50)

    class Meta:
        app_label = "statement_corpus"  # not installed: no migration, tables made per test

    def __str__(self) -> str:
        return self.label


class Product(models.Model):
    shelf = models.ForeignKey(Shelf, models.CASCADE, related_name="products", null=True)
    item = models.ForeignKey(Item, models.SET_NULL, null=True)
    name = models.CharField(max_length=100)
    price = models.DecimalField(max_digits=10, decimal_places=2, default=Decimal(0))
    stocked_at = models.DateTimeField(null=True)
    attributes = models.JSONField(default=dict)
    tags = ArrayField(models.CharField(max_length=20), default=list)

    class Meta:
        app_label = "statement_corpus"

    def __str__(self) -> str:
        return self.name


def _window(expression: Any, **kwargs: Any) -> Window:
    return Window(expression, partition_by=[F("shelf")], order_by=F("price").desc(), **kwargs)


# Each entry runs one or more statements through the ORM.
QUERYSETS: dict[str, Callable[[], object]] = {
    "filter": lambda: list(Item.objects.filter(name="a", quantity__gte=1)),
    "lookups": lambda: list(
        Item.objects.filter(
            Q(name__icontains="x%_'\"") | Q(name__istartswith="b") | Q(name__endswith="c"),
            ~Q(name__iexact="d"),
            quantity__in=[1, 2, 3],
            quantity__range=(0, 10),
            name__isnull=False,
        )
    ),
    "regex": lambda: list(Item.objects.filter(name__regex=r"^a.*\(b\)$", name__iregex="x+")),
    "date parts": lambda: list(
        Product.objects.filter(
            stocked_at__year=2024,
            stocked_at__month__gte=2,
            stocked_at__week_day=3,
            stocked_at__iso_year=2024,
            stocked_at__quarter=1,
            stocked_at__hour__lt=12,
            stocked_at__date__lte=datetime.date(2024, 5, 1),
        )
    ),
    "json keys": lambda: list(
        Product.objects.filter(
            attributes__color="red",
            attributes__size__gt=3,
            attributes__has_key="color",
            attributes__has_any_keys=["a", "b"],
            attributes__contains={"a": 1},
            attributes__dims__0=2,
        ).annotate(color=KT("attributes__color"))
    ),
    "arrays": lambda: list(
        Product.objects.filter(tags__contains=["a"], tags__overlap=["b"], tags__len=2, tags__0="x")
    ),
    "aggregates": lambda: Product.objects.aggregate(
        Sum("price"),
        Avg("price"),
        Max("stocked_at"),
        Min("price"),
        StdDev("price"),
        Variance("price", sample=True),
        Count("shelf", distinct=True),
        cheap=Count("id", filter=Q(price__lt=10)),
    ),
    "postgres aggregates": lambda: Product.objects.aggregate(
        names=ArrayAgg("name", order_by="name"),
        joined=StringAgg("name", delimiter=Value(", ")),
        documents=JSONBAgg("attributes"),
        all_priced=BoolAnd(Q(price__gt=0)),
        any_priced=BoolOr(Q(price__gt=0)),
    ),
    "string functions": lambda: list(
        Item.objects.annotate(
            lower=fn.Lower("name"),
            upper=fn.Upper("name"),
            length=fn.Length("name"),
            both=fn.Concat("name", Value(" - "), "quantity", output_field=models.TextField()),
            part=fn.Substr("name", 2, 3),
            swapped=fn.Replace("name", Value("a"), Value("b")),
            trimmed=fn.Trim("name"),
            padded=fn.LPad("name", 10, Value("*")),
            repeated=fn.Repeat("name", 2),
            position=fn.StrIndex("name", Value("a")),
            left=fn.Left("name", 2),
            right=fn.Right("name", 2),
            reversed=fn.Reverse("name"),
            md5=fn.MD5("name"),
            sha256=fn.SHA256("name"),
            collated=fn.Collate("name", "C"),
        )
    ),
    "math and conditional functions": lambda: list(
        Product.objects.annotate(
            rounded=fn.Round("price", 1),
            absolute=fn.Abs("price"),
            ceil=fn.Ceil("price"),
            floor=fn.Floor("price"),
            power=fn.Power("price", 2),
            root=fn.Sqrt(fn.Abs("price")),
            mod=fn.Mod("price", 3),
            sign=fn.Sign("price"),
            random=fn.Random(),
            either=fn.Coalesce("stocked_at", fn.Now()),
            unless=fn.NullIf("name", Value("")),
            most=fn.Greatest("price", Value(Decimal(1))),
            least=fn.Least("price", Value(Decimal(1))),
            whole=fn.Cast("price", models.IntegerField()),
            doubled=ExpressionWrapper(F("price") * 2, output_field=models.DecimalField()),
            label=Case(When(price__gt=10, then=Value("dear")), default=Value("cheap")),
            uuid=RandomUUID(),
            now=TransactionNow(),
        )
    ),
    "dates": lambda: (
        list(
            Product.objects.annotate(
                day=fn.TruncDay("stocked_at"),
                month=fn.TruncMonth("stocked_at"),
                year=fn.ExtractYear("stocked_at"),
                weekday=fn.ExtractWeekDay("stocked_at"),
                date=fn.TruncDate("stocked_at"),
            )
        )
        + list(Product.objects.dates("stocked_at", "month"))
        + list(Product.objects.datetimes("stocked_at", "hour"))
    ),
    "json functions": lambda: list(
        Product.objects.annotate(document=fn.JSONObject(name="name", price="price"))
    ),
    "subquery and exists": lambda: list(
        Shelf.objects.annotate(
            cheapest=Subquery(
                Product.objects.filter(shelf=OuterRef("pk")).order_by("price").values("price")[:1]
            ),
            stocked=Exists(Product.objects.filter(shelf=OuterRef("pk"), stocked_at__isnull=False)),
        ).filter(id__in=Subquery(Product.objects.values("shelf")))
    ),
    "window functions": lambda: list(
        Product.objects.annotate(
            row=_window(fn.RowNumber()),
            rank=_window(fn.Rank()),
            dense=_window(fn.DenseRank()),
            previous=_window(fn.Lag("price")),
            following=_window(fn.Lead("price", 2)),
            second=_window(fn.NthValue("price", 2)),
            first=_window(fn.FirstValue("price")),
            bucket=_window(fn.Ntile(4)),
            spread=_window(fn.CumeDist()),
            percent=_window(fn.PercentRank()),
            running=Window(
                Sum("price"), order_by="stocked_at", frame=models.RowRange(start=-2, end=0)
            ),
        ).filter(row__lte=3)
    ),
    "distinct and nulls ordering": lambda: (
        list(Product.objects.distinct().order_by(F("stocked_at").asc(nulls_last=True)))
        + list(
            Product.objects.order_by("shelf", F("price").desc(nulls_first=True)).distinct("shelf")
        )
    ),
    "values": lambda: (
        list(Item.objects.values("name").annotate(n=Count("id")).order_by("-n"))
        + list(Item.objects.values_list("name", flat=True))
        + list(Item.objects.only("name").defer("quantity"))
    ),
    "select_related and prefetch": lambda: (
        [
            (product.shelf, product.item)
            for product in Product.objects.select_related("shelf", "item").filter(shelf__label="x")
        ]
        + [
            list(shelf.products.all())
            for shelf in Shelf.objects.prefetch_related(
                "products", Prefetch("products", Product.objects.filter(price__gt=1), "dear")
            )
        ]
    ),
    "set operations": lambda: (
        list(Item.objects.filter(quantity=1).union(Item.objects.filter(quantity=2), all=True))
        + list(Item.objects.values("name").intersection(Item.objects.values("name")))
        + list(
            Item.objects.values("name").difference(Item.objects.filter(quantity=0).values("name"))
        )
    ),
    "shortcuts": lambda: (
        Item.objects.exists(),
        Item.objects.count(),
        Item.objects.order_by("name").first(),
        Item.objects.last(),
        Item.objects.in_bulk([1, 2]),
        list(Item.objects.iterator(chunk_size=10)),
        Item.objects.filter(name="nobody").exists(),
    ),
    "full-text search": lambda: list(
        Product.objects.annotate(
            rank=SearchRank(SearchVector("name", weight="A"), SearchQuery("red & shoe", "raw")),
            match=SearchVector("name", config="english"),
        ).filter(match=SearchQuery("shoe", search_type="websearch"))
    ),
}


# What each entry's SQL must show, so that the corpus keeps exercising what it names.
FEATURES: dict[str, str | tuple[str, ...]] = {
    "filter": "WHERE",
    "lookups": "UPPER(",
    "regex": "::text ~",
    "date parts": "EXTRACT(",
    "json keys": "->",
    "arrays": "@>",
    "aggregates": "STDDEV_POP(",
    "postgres aggregates": "ARRAY_AGG(",
    "string functions": "LPAD(",
    "math and conditional functions": "GEN_RANDOM_UUID(",
    "dates": "DATE_TRUNC(",
    "json functions": "JSONB_BUILD_OBJECT(",
    "subquery and exists": "EXISTS(",
    "window functions": "OVER (",
    "distinct and nulls ordering": "DISTINCT ON (",
    "values": "GROUP BY",
    "select_related and prefetch": ("OUTER JOIN", '"shelf_id" IN ('),
    "set operations": "EXCEPT",
    "shortcuts": "LIMIT 1",
    "full-text search": "TS_RANK(",
}


@pytest.fixture
def statements() -> Iterator[list[tuple[str, str]]]:
    """Each statement run, as (SQL with placeholders, SQL with the parameters bound)."""
    with connection.cursor() as cursor:  # for SHA256(): rolled back with the test
        cursor.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
    for model in (Shelf, Product):
        with connection.schema_editor() as editor:
            editor.create_model(model)
    # A row of each, so that prefetches and joins have something to fetch.
    shelf = Shelf.objects.create(label="x")
    Product.objects.create(
        shelf=shelf,
        item=Item.objects.create(name="corpus item", quantity=1),
        name="red shoe",
        price=Decimal(5),
        stocked_at=datetime.datetime(2024, 1, 2, 3, tzinfo=datetime.UTC),
        attributes={"color": "red", "size": 4, "dims": [2]},
        tags=["a", "x"],
    )
    caught: list[tuple[str, str]] = []

    def catch(execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        result = execute(sql, params, many, context)
        bound = connection.ops.last_executed_query(context["cursor"].cursor, sql, params)
        caught.append((sql, bound))
        return result

    with connection.execute_wrapper(catch):
        yield caught


@pytest.mark.parametrize("name", list(QUERYSETS))
def test_every_orm_read_is_a_read(name: str, statements: list[tuple[str, str]]) -> None:
    QUERYSETS[name]()

    assert statements, "the queryset sent nothing"
    sent = " ".join(sql for sql, _ in statements).upper()
    features = FEATURES[name]
    for feature in (features,) if isinstance(features, str) else features:
        assert feature.upper() in sent
    for sql, bound in statements:
        assert is_read_statement(sql), sql
        # A server-side cursor (iterator()) reaches the server inside DECLARE: not a read
        # to re-run on its own, and not what the backend's cursor is asked to run.
        if not bound.startswith("DECLARE "):
            assert is_read_statement(bound), bound


def test_orm_locking_reads_and_writes_are_not_reads(statements: list[tuple[str, str]]) -> None:
    with transaction.atomic():
        list(Item.objects.select_for_update(skip_locked=True).filter(name="a"))
        list(Item.objects.select_for_update(no_key=True, of=("self",)))
        Item.objects.create(name="written")
        Item.objects.filter(name="written").update(quantity=F("quantity") + 1)
        Item.objects.bulk_create([Item(name="b"), Item(name="c")])
        Item.objects.filter(name="b").delete()
        Product.objects.update_or_create(name="p", defaults={"price": Decimal(2)})

    judged = [(sql, is_read_statement(sql)) for sql, _ in statements]
    assert not any(read for sql, read in judged if not sql.lstrip().upper().startswith("SELECT"))
    assert [sql for sql, read in judged if "FOR " in sql and read] == []
    assert len([sql for sql, read in judged if not read]) >= 8
