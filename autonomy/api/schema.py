"""The OpenAPI schema's error answers, documented once for every operation (a drf-spectacular
postprocessing hook, so no view repeats them).

Every error the API answers is the one envelope of ``autonomy.api.errors``; this hook adds that
envelope as a component and, to each operation, the statuses it can answer: any request can be
malformed (400), unauthenticated (401), refused (403), aimed at nothing (404) or rate-limited
(429); a write can also conflict with the current state (409), be too large (413) or in a
content type the API does not read (415). A status a view documents itself is kept.
"""

from autonomy.errors import ErrorCode

ENVELOPE = "ErrorEnvelope"
ENVELOPE_SCHEMA = {
    "type": "object",
    "description": "Every API error: a stable snake_case code, a message for people, and "
    "details (for example the invalid fields) for programs.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {
                    "type": "string",
                    "description": "Stable and snake_case; one of: "
                    + ", ".join(code.value for code in ErrorCode),
                    "example": ErrorCode.VALIDATION_FAILED.value,
                },
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": {}},
            },
            "required": ["code", "message", "details"],
        }
    },
    "required": ["error"],
}

ANY_REQUEST = {
    "400": "The request is not valid (validation_failed, malformed_json, unknown_field, ...).",
    "401": "No credentials, or credentials that are invalid, expired or revoked.",
    "403": "Authenticated, but not allowed (permission_denied, scope_missing, not_an_agent, ...).",
    "404": "No such resource, or one the caller may not see.",
    "429": "Too many requests (rate_limited); Retry-After says when to try again.",
}
WRITES = {
    "409": "The resource's state does not allow this now (conflict, illegal_transition, ...).",
    "413": "The request body is too large (payload_too_large).",
    "415": "The request body's content type is not JSON (unsupported_media_type).",
}
WRITE_METHODS = ("post", "put", "patch", "delete")


def document_errors(result, generator, request, public):
    """Add the error envelope and each operation's error statuses to the generated schema, and
    say that request bodies take no fields beyond their own (the API refuses them with
    unknown_field, see ``autonomy.api.serializers.StrictSerializer``)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in schemas.items():
        if name.endswith("Request") and schema.get("type") == "object":
            schema.setdefault("additionalProperties", False)
    schemas[ENVELOPE] = ENVELOPE_SCHEMA
    content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ENVELOPE}"}}}
    for item in result.get("paths", {}).values():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            statuses = {**ANY_REQUEST, **(WRITES if method in WRITE_METHODS else {})}
            for status, description in statuses.items():
                operation["responses"].setdefault(
                    status, {"description": description, "content": content}
                )
    return result
