# Models of the chaos suite (tests/chaos).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("testapp", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="ChaosOrder",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("webhook_key", models.CharField(db_index=True, max_length=255)),
                ("shop_order_id", models.BigIntegerField()),
            ],
        ),
        migrations.CreateModel(
            name="ChaosLedgerEntry",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("token", models.CharField(max_length=64, unique=True)),
            ],
        ),
    ]
