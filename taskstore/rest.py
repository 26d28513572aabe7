"""What every REST view answers alike (docs/protocol.md, "REST"), on Django's own tools.

Errors are ``{"error": "..."}``; a method the resource does not answer gets Django's 405
(``require_http_methods``) with its ``Allow`` header, as JSON; bad query parameters and bodies
are Django forms' errors, as 400; a session user's unsafe request passes Django's CSRF check
(``CsrfViewMiddleware``) or gets 403.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django import forms
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.http import require_http_methods

View = TypeVar("View", bound=Callable[..., HttpResponse])

CSRF_FAILED = "CSRF check failed. Send the X-CSRFToken header with the csrftoken cookie's value."


def error(status: int, message: str, **headers: str) -> JsonResponse:
    """``{"error": message}`` with ``status`` (and ``headers``)."""
    return JsonResponse({"error": message}, status=status, headers=headers or None)


def methods(*allowed: str) -> Callable[[View], View]:
    """Django's ``require_http_methods(allowed)``, its 405 answered as JSON naming the methods."""

    def decorator(view: View) -> View:
        guarded = require_http_methods(list(allowed))(view)

        @wraps(view)
        def answered(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            response: HttpResponse = guarded(request, *args, **kwargs)
            if isinstance(response, HttpResponseNotAllowed):
                return error(405, f"Use {' or '.join(allowed)}.", Allow=response["Allow"])
            return response

        return answered  # type: ignore[return-value]

    return decorator


def csrf_passes(request: HttpRequest, view: Callable[..., Any]) -> bool:
    """Whether ``request`` passes Django's CSRF check for ``view``.

    The API's views are ``csrf_exempt`` so that anonymous clients, who hold no CSRF cookie, can
    call them; a view calls this for session users, and answers its own JSON 403 when it fails
    (the middleware's answer is Django's HTML failure page; it logs the reason to
    ``django.security.csrf``). ``view`` must be the undecorated function: the middleware skips
    views marked exempt.
    """
    check = CsrfViewMiddleware(lambda _request: HttpResponse())
    check.process_request(request)
    return check.process_view(request, view, (), {}) is None


def first_error(form: forms.Form) -> str:
    """The first message of an invalid form, as the 400 answer's text: the form's own first
    (it is about the whole request), then the first field's."""
    for messages in (form.non_field_errors(), *form.errors.values()):
        if messages:
            return str(messages[0])
    return "Bad request."


class WholeNumber(forms.IntegerField):
    """A whole number as Python's ``int()`` reads it: ``1.0`` is refused (Django's own field
    takes it)."""

    def to_python(self, value: Any) -> int | None:
        """The number, None when empty, or the field's "invalid" error."""
        if value in self.empty_values:
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid") from None


def whole_number(name: str, minimum: int) -> forms.IntegerField:
    """An optional query parameter holding a whole number of at least ``minimum``."""
    return WholeNumber(
        required=False,
        min_value=minimum,
        error_messages={
            "invalid": f"'{name}' must be a whole number.",
            "min_value": f"'{name}' must be at least {minimum}.",
        },
    )


class JsonValue(forms.Field):
    """A value of a parsed JSON body, kept as it is, of one JSON type (``expected``)."""

    def __init__(self, expected: type, *, message: str, **kwargs: Any) -> None:
        self.expected = expected
        kwargs.setdefault("required", False)
        super().__init__(error_messages={"invalid": message, "required": message}, **kwargs)

    def to_python(self, value: Any) -> Any:
        """The value itself: a JSON body needs no conversion."""
        return value

    def validate(self, value: Any) -> None:
        """Refuse a present value of another JSON type."""
        super().validate(value)
        if value is not None and not isinstance(value, self.expected):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
