"""Middleware that makes the request's user the owner of every task sent while it is handled."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from taskstore.owner import owned_by


class TaskOwnerMiddleware:
    """Sets the task owner from ``request.user``; serves sync and async stacks with one body.

    The user is resolved only if a task is sent, so other requests pay nothing.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponse | Awaitable[HttpResponse]:
        if self.async_mode:
            return self.__acall__(request)
        with owned_by(getattr(request, "user", None)):
            return self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        with owned_by(getattr(request, "user", None)):
            return await self.get_response(request)
