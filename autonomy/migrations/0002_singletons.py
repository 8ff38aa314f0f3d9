from django.db import migrations


def create(apps, schema_editor):
    apps.get_model("autonomy", "AuditHead").objects.get_or_create(pk=1)
    apps.get_model("autonomy", "PolicyStoreState").objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("autonomy", "0001_initial")]
    operations = [migrations.RunPython(create, migrations.RunPython.noop)]
