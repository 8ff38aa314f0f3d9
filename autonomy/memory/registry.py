"""The built-in ``memory`` connector and its operations, as every installation has them.
Ensured after every migrate (``autonomy.apps``); people curate them afterwards like any
operation (sensitivity, data class, enabled), and nothing here overwrites that."""

from auditlog.context import disable_auditlog
from django.db import transaction

from autonomy.memory.selectors import MemoryScope
from autonomy.models import Connector, ConnectorKind, DataClass, Effect, Operation

SLUG = "memory"
KEY = {"type": "string", "minLength": 1, "maxLength": 200}
SCOPE = {
    "type": "string",
    "enum": list(MemoryScope.values),
    "description": "unit (your business unit), role (your role) or template (the workflow "
    "template of the run you act in); a read or search without one looks in all of them, "
    "most specific first",
}


def _schema(required: list[str], **props) -> dict:
    return {
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": False,
    }


# slug, name, description, effect, sensitivity, params schema, other fields
OPERATIONS = [
    ("read", "Recall", "Read one entry of shared memory by its key.", Effect.READ, 1,
     _schema(["key"], key=KEY, scope=SCOPE), {}),
    ("search", "Search memory", "List entries of shared memory whose key starts with a prefix.",
     Effect.READ, 1,
     _schema([], prefix={"type": "string", "maxLength": 200}, scope=SCOPE,
             limit={"type": "integer", "minimum": 1, "maximum": 50}), {}),
    ("write", "Remember", "Write one entry of shared memory (replaces the key's value in "
     "that scope), with a time to live and a sensitivity.", Effect.WRITE, 2,
     _schema(["key", "value"], key=KEY, value={}, scope=SCOPE,
             ttl_seconds={"type": "integer", "minimum": 1},
             sensitivity={"type": "string", "enum": list(DataClass.values)}),
     # the parameters that carry content: content rules (``autonomy.content``) apply to writes
     {"content_params": ["key", "value"]}),
    ("delete", "Forget", "Delete one entry of shared memory.", Effect.DELETE, 2,
     _schema(["key"], key=KEY, scope=SCOPE), {}),
]  # fmt: skip


def memory_connector_ensure() -> int:
    """Create the memory connector and whichever of its operations are missing; returns how
    many rows it created. System rows: not written to the change history (each save moves
    the policy-store version, as any registry change does)."""
    created = 0
    with transaction.atomic(), disable_auditlog():
        connector, made = Connector.objects.get_or_create(
            slug=SLUG,
            defaults={
                "name": "Shared memory",
                "kind": ConnectorKind.MEMORY,
                "description": "What agents remember across runs, by unit, role or template.",
            },
        )
        created += made
        for slug, name, description, effect, sensitivity, schema, fields in OPERATIONS:
            _, made = Operation.objects.get_or_create(
                connector=connector,
                slug=slug,
                defaults=dict(
                    name=name, description=description, effect=effect, sensitivity=sensitivity,
                    data_class=DataClass.INTERNAL, params_schema=schema, **fields,
                ),
            )  # fmt: skip
            created += made
    return created
