"""One exception handler for the whole API: every error is
``{"error": {"code": "...", "message": "...", "details": {...}}}`` with the right status."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.response import Response

from autonomy.errors import DomainError, ErrorCode

log = logging.getLogger(__name__)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = ErrorCode.PAYLOAD_TOO_LARGE

    def __init__(self, details=None):
        super().__init__()
        self.details = details or {}


class CodedAuthenticationFailed(exceptions.AuthenticationFailed):
    """An authentication failure that names why (expired, revoked, ...)."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(detail=message, code=code)
        self.error_code = code


_DRF_CODES: list[tuple[type[Exception], ErrorCode]] = [
    (exceptions.ParseError, ErrorCode.MALFORMED_JSON),
    (exceptions.NotAuthenticated, ErrorCode.NOT_AUTHENTICATED),
    (exceptions.AuthenticationFailed, ErrorCode.AUTHENTICATION_FAILED),
    (exceptions.PermissionDenied, ErrorCode.PERMISSION_DENIED),
    (exceptions.NotFound, ErrorCode.NOT_FOUND),
    (exceptions.MethodNotAllowed, ErrorCode.METHOD_NOT_ALLOWED),
    (exceptions.NotAcceptable, ErrorCode.NOT_ACCEPTABLE),
    (exceptions.UnsupportedMediaType, ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    (exceptions.Throttled, ErrorCode.RATE_LIMITED),
]


def error_body(code: str, message: str, details: dict | None = None) -> dict:
    return {"error": {"code": str(code), "message": message, "details": details or {}}}


def _validation_details(detail):
    """Flatten DRF's nested ErrorDetail structure into plain JSON (messages and codes)."""
    if isinstance(detail, dict):
        return {key: _validation_details(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_validation_details(item) for item in detail]
    return {"message": str(detail), "code": getattr(detail, "code", "invalid")}


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()

    headers = {}
    if isinstance(exc, DomainError):
        body = error_body(exc.code, exc.message, exc.details)
        return Response(body, status=exc.status_code)

    if isinstance(exc, PayloadTooLarge):
        return Response(
            error_body(ErrorCode.PAYLOAD_TOO_LARGE, str(exc.detail), exc.details),
            status=exc.status_code,
        )

    if isinstance(exc, exceptions.ValidationError):
        details = _validation_details(exc.detail)
        code = ErrorCode.VALIDATION_FAILED
        if isinstance(exc.detail, dict) and any(
            getattr(item, "code", None) == ErrorCode.UNKNOWN_FIELD
            for value in exc.detail.values()
            for item in (value if isinstance(value, list) else [value])
        ):
            code = ErrorCode.UNKNOWN_FIELD
        return Response(
            error_body(code, "The request is not valid.", {"fields": details}),
            status=status.HTTP_400_BAD_REQUEST,
        )

    if isinstance(exc, exceptions.APIException):
        code = getattr(exc, "error_code", None)
        if code is None:
            code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), None)
        if code is None:
            code = exc.default_code
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        details = getattr(exc, "details", None) or (
            {} if isinstance(exc.detail, str) else {"detail": exc.detail}
        )
        message = exc.detail if isinstance(exc.detail, str) else str(exc.default_detail)
        return Response(
            error_body(code, str(message), details), status=exc.status_code, headers=headers
        )

    # Anything else is a bug: log it with its traceback and answer a stable JSON 500.
    log.exception("Unhandled API error")
    return Response(
        error_body(ErrorCode.INTERNAL_ERROR, "Internal server error."),
        status=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def json_404(request, exception=None):
    return JsonResponse(error_body(ErrorCode.NOT_FOUND, "Not found."), status=404)


def json_500(request):
    return JsonResponse(error_body(ErrorCode.INTERNAL_ERROR, "Internal server error."), status=500)


def json_400(request, exception=None):
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(
            error_body(ErrorCode.PAYLOAD_TOO_LARGE, "The request body is too large."), status=413
        )
    return JsonResponse(error_body(ErrorCode.VALIDATION_FAILED, "Bad request."), status=400)


# Statuses Django itself answers outside any API view, and the code each becomes.
_PAGE_CODES = {
    400: (ErrorCode.VALIDATION_FAILED, "Bad request."),
    403: (ErrorCode.PERMISSION_DENIED, "Permission denied."),
    404: (ErrorCode.NOT_FOUND, "Not found."),
    405: (ErrorCode.METHOD_NOT_ALLOWED, "Method not allowed."),
    413: (ErrorCode.PAYLOAD_TOO_LARGE, "The request body is too large."),
}


class APIErrorPageMiddleware:
    """Under /api/, an error page that Django rendered itself (an unmatched path, a 500, and
    in DEBUG its technical pages) becomes the JSON envelope, so an API client never gets HTML,
    whatever the mode. The API views' JSON errors, and the browsable API's pages, pass."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        content_type = response.get("Content-Type", "")
        api_error = response.status_code >= 400 and _is_api(request)
        if not api_error or content_type.startswith("application/json"):
            return response
        if isinstance(response, Response):
            if isinstance(getattr(response, "accepted_renderer", None), BrowsableAPIRenderer):
                return response  # the browsable API's page, for a person in a browser
            # An API view's error in another format (the schema's YAML, the docs page's
            # HTML): the same envelope, as JSON.
            json = JsonResponse(response.data, status=response.status_code)
            for header in ("WWW-Authenticate", "Retry-After"):
                if header in response:
                    json[header] = response[header]
            return json
        if response.status_code == 404:
            return json_404(request)
        code, message = _PAGE_CODES.get(
            response.status_code, (ErrorCode.INTERNAL_ERROR, "Internal server error.")
        )
        return JsonResponse(error_body(code, message), status=response.status_code)
