"""Template tags for pages that talk to taskstore's sockets: ``{% load taskstore %}``."""

from __future__ import annotations

from django import template

from taskstore import conf

register = template.Library()

# The sockets taskstore routes under TASKSTORE_WEBSOCKET_PREFIX.
SOCKETS = ("tasks", "feed")


@register.simple_tag
def taskstore_socket(name: str) -> str:
    """The path of one of taskstore's sockets, e.g. ``{% taskstore_socket "feed" %}`` → ``/ws/feed/``.

    It follows TASKSTORE_WEBSOCKET_PREFIX, so a page that takes its socket URL from here (a
    ``data-`` attribute its script passes to ``TaskClient`` or ``FeedClient``) goes wherever the
    project routes them.
    """
    if name not in SOCKETS:
        raise template.TemplateSyntaxError(
            f"taskstore_socket takes one of {', '.join(map(repr, SOCKETS))}, not {name!r}"
        )
    return conf.websocket_path(name)
