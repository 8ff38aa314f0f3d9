"""Policy history starts with one version per existing policy (its current text, under its
current number) and one policy-set version of what is enabled now. Earlier texts were never
kept, so they cannot be recorded."""

import hashlib

from django.db import migrations
from django.utils import timezone

NOTE = "Recorded when policy history began; earlier texts were not kept."


def backfill(apps, schema_editor):
    Policy = apps.get_model("autonomy", "Policy")
    PolicyVersion = apps.get_model("autonomy", "PolicyVersion")
    PolicySetVersion = apps.get_model("autonomy", "PolicySetVersion")
    now = timezone.now()
    policies = list(Policy.objects.order_by("pk"))
    if not policies:
        return
    PolicyVersion.objects.bulk_create(
        PolicyVersion(
            policy_id=p.pk,
            policy_key=p.pk,
            policy_name=p.name,
            number=p.version,
            text=p.text,
            description=p.description,
            enabled=p.enabled,
            change="created",
            author_id=p.author_id,
            author_name="",
            created_at=now,
            note=NOTE,
            content_hash=hashlib.sha256(p.text.encode()).hexdigest(),
        )
        for p in policies
    )
    PolicySetVersion.objects.create(
        number=1,
        created_at=now,
        summary="Policy history began.",
        policies={str(p.pk): p.version for p in policies if p.enabled},
    )


class Migration(migrations.Migration):
    dependencies = [("autonomy", "0016_policy_history")]

    operations = [migrations.RunPython(backfill, migrations.RunPython.noop)]
