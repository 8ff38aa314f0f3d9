"""The API's JSON parser, with a hard limit on body size.

DRF's JSONParser reads the stream without looking at DATA_UPLOAD_MAX_MEMORY_SIZE, so a huge
body would be read whole into memory. This one refuses it with 413 before parsing.
"""

import io

from django.conf import settings
from rest_framework.parsers import JSONParser

from autonomy.api.errors import PayloadTooLarge


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
        return super().parse(stream, media_type, parser_context)
