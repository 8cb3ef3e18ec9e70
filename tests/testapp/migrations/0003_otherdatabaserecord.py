from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("testapp", "0002_otherdatabaseexecution"),
        ("django_idempotency", "0008_mysql_rules"),
    ]

    operations = [
        migrations.CreateModel(
            name="OtherDatabaseRecord",
            fields=[],
            options={
                "proxy": True,
                "indexes": [],
                "constraints": [],
            },
            bases=("django_idempotency.idempotencyrecord",),
        ),
    ]
