"""Actions keep the W3C trace id of their decision (empty for earlier actions)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("autonomy", "0007_action_credential_unindexed"),
    ]

    operations = [
        migrations.AddField(
            model_name="actionrequest",
            name="trace_id",
            field=models.CharField(blank=True, max_length=32),
        ),
    ]
