"""Connectors and operations in the admin. Grants are guardian object permissions
(``execute_operation`` / ``execute_connector``) given to a role's group or an agent's
service user, from the "Object permissions" page of each connector or operation."""

from django.contrib import admin
from guardian.admin import GuardedModelAdmin

from autonomy.models import Connector, Operation


class OperationInline(admin.TabularInline):
    model = Operation
    extra = 0
    fields = ["slug", "name", "effect", "sensitivity", "data_class", "pii", "financial", "enabled"]
    show_change_link = True


@admin.register(Connector)
class ConnectorAdmin(GuardedModelAdmin):
    list_display = ["slug", "name", "kind", "enabled"]
    list_filter = ["kind", "enabled"]
    search_fields = ["slug", "name"]
    inlines = [OperationInline]


@admin.register(Operation)
class OperationAdmin(GuardedModelAdmin):
    list_display = [
        "__str__",
        "name",
        "effect",
        "sensitivity",
        "data_class",
        "pii",
        "financial",
        "enabled",
    ]
    list_filter = [
        "connector",
        "effect",
        "sensitivity",
        "data_class",
        "pii",
        "financial",
        "enabled",
    ]
    list_select_related = ["connector"]
    search_fields = ["slug", "name", "connector__slug"]
