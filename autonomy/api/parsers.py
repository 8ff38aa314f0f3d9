"""The API's JSON parser, with hard limits on body size and nesting depth.

DRF's JSONParser reads the stream without looking at DATA_UPLOAD_MAX_MEMORY_SIZE, so a huge
body would be read whole into memory. This one refuses it with 413 before parsing.

Python's json module recurses once per level of nesting, so ``[[[[...]]]]`` a few thousand
deep raised RecursionError (a 500) in every POST, and a few hundred deep could still exhaust
the stack later, in a serializer, jsonschema or json.dumps. Bodies nested deeper than
AUTONOMY_MAX_JSON_DEPTH are refused here, once, with 400 json_too_deep.
"""

import io

from django.conf import settings
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser

from autonomy.api.errors import PayloadTooLarge
from autonomy.errors import ErrorCode


class JSONTooDeep(exceptions.APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_detail = "The JSON body is nested too deeply."
    default_code = ErrorCode.JSON_TOO_DEEP

    def __init__(self, *, max_depth: int):
        super().__init__()
        self.details = {"max_depth": max_depth}


def json_depth_exceeds(value, limit: int) -> bool:
    """Whether ``value`` nests objects and arrays more than ``limit`` deep (``{}`` is 1).
    Iterative, so that checking the depth cannot itself run out of stack."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


class BoundedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        declared = 0
        if request is not None:
            try:
                declared = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                declared = 0
        if limit is not None and declared > limit:
            raise PayloadTooLarge(details={"limit_bytes": limit, "content_length": declared})
        if limit is not None and stream is not None:
            body = stream.read(limit + 1)
            if len(body) > limit:
                raise PayloadTooLarge(details={"limit_bytes": limit})
            stream = io.BytesIO(body)
        max_depth = settings.AUTONOMY_MAX_JSON_DEPTH
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError as exc:
            raise JSONTooDeep(max_depth=max_depth) from exc
        if json_depth_exceeds(data, max_depth):
            raise JSONTooDeep(max_depth=max_depth)
        return data
