"""E-mail links expire on the server: links issued before get the expiry their signature had,
capped at their request's own expiry."""

from datetime import timedelta

from django.conf import settings
from django.db import migrations, models


def backfill(apps, schema_editor):
    EmailLink = apps.get_model("approvals", "EmailLink")
    max_age = timedelta(seconds=settings.AUTONOMY_APPROVAL_LINK_MAX_AGE)
    for link in EmailLink.objects.select_related("request").iterator():
        link.expires_at = min(link.created_at + max_age, link.request.expires_at)
        link.save(update_fields=["expires_at"])


class Migration(migrations.Migration):
    dependencies = [("approvals", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="emaillink", name="expires_at", field=models.DateTimeField(null=True)
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="emaillink", name="expires_at", field=models.DateTimeField()
        ),
    ]
