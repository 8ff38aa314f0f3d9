"""The Cedar schema, generated from the registry so policies are checked against what exists.

Entity uids: ``Agent::"<uuid>"``, ``Role::"<slug>"``, ``BusinessUnit::"<slug>"``,
``Connector::"<slug>"``, ``Operation::"<connector>.<operation>"``; one action, ``invoke``.
"""

from collections.abc import Iterable

from autonomy.models import Operation

ACTION = "invoke"

# JSON Schema scalar types and the Cedar type a policy sees them as (Cedar has no floats).
JSON_TO_CEDAR = {"integer": "Long", "number": "Long", "string": "String", "boolean": "Boolean"}


def _entity(name: str) -> dict:
    return {"type": "Entity", "name": name}


def _record(attributes: dict, optional: Iterable[str] = ()) -> dict:
    optional = set(optional)
    return {
        "type": "Record",
        "attributes": {
            name: {**spec, "required": False} if name in optional else spec
            for name, spec in attributes.items()
        },
    }


def _cedar_type(spec) -> str | None:
    """The Cedar type of one JSON-schema property, or None when it has no scalar equivalent."""
    if not isinstance(spec, dict):
        return None
    kind = spec.get("type")
    if isinstance(kind, list):  # ["integer", "null"]: nullable means optional here
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if len(kinds) == 1 else None
    return JSON_TO_CEDAR.get(kind) if isinstance(kind, str) else None


def params_types(params_schemas: Iterable[dict]) -> dict[str, str]:
    """The union of every operation's parameters with one Cedar type each.

    A name declared with different (or non-scalar) types by different operations is left out:
    no single type would let the validator check a policy that reads it.
    """
    seen: dict[str, str | None] = {}
    for params_schema in params_schemas:
        properties = (params_schema or {}).get("properties") or {}
        if not isinstance(properties, dict):
            continue
        for name, spec in properties.items():
            cedar = _cedar_type(spec)
            if name in seen and seen[name] != cedar:
                cedar = None
            seen[name] = cedar
    return {name: cedar for name, cedar in sorted(seen.items()) if cedar is not None}


def schema_for(params: dict[str, str]) -> dict:
    """The schema document for a given parameter union (pure, so the engine can reuse it)."""
    string, long, boolean = {"type": "String"}, {"type": "Long"}, {"type": "Boolean"}
    context = _record(
        {
            "params": _record(
                {name: {"type": cedar} for name, cedar in params.items()}, optional=params
            ),
            "risk_score": long,
            "hour": long,
            "weekday": long,
            "amount": long,
            "record_count": long,
            "flags": {"type": "Set", "element": string},
        },
        optional=("amount", "record_count"),
    )
    return {
        "": {
            "entityTypes": {
                "Agent": {
                    "memberOfTypes": ["Role", "BusinessUnit"],
                    "shape": _record(
                        {
                            "status": string,
                            "risk_tier": long,
                            "business_unit": _entity("BusinessUnit"),
                            "role": _entity("Role"),
                        }
                    ),
                },
                "Role": {},
                "BusinessUnit": {},
                "Connector": {"shape": _record({"kind": string})},
                "Operation": {
                    "memberOfTypes": ["Connector"],
                    "shape": _record(
                        {
                            "connector": _entity("Connector"),
                            "effect": string,
                            "sensitivity": long,
                            "data_class": string,
                            "pii": boolean,
                            "financial": boolean,
                        }
                    ),
                },
            },
            "actions": {
                ACTION: {
                    "appliesTo": {
                        "principalTypes": ["Agent"],
                        "resourceTypes": ["Operation"],
                        "context": context,
                    }
                }
            },
        }
    }


def build_schema() -> dict:
    """The Cedar JSON schema for the registry as it is now (one query)."""
    return schema_for(params_types(Operation.objects.values_list("params_schema", flat=True)))
