"""Actions lose their credential index: nothing reads by it and credentials are never
deleted; one write fewer on every gate decision."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("autonomy", "0006_agent_usage"),
    ]

    operations = [
        migrations.AlterField(
            model_name="actionrequest",
            name="credential",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="agents.credential",
            ),
        ),
    ]
