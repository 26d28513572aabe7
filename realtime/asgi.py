"""ASGI entry point: ``daphne realtime.asgi:application``."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "realtime.settings")
# Load Django (apps, models) before anything imports the consumers.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from routing import websocket_urlpatterns  # noqa: E402
from taskstore.asgi import BindPublisherLoop, OriginValidator, SessionAuthMiddleware  # noqa: E402

# BindPublisherLoop wraps everything: it tells the publisher which loop to send from, which
# the in-memory channel layer needs. The origin check runs first, before any session lookup.
# SessionAuthMiddleware is Channels' AuthMiddlewareStack for sockets, in one step (less memory
# per open socket; docs/deployment.md, "Many sockets on one process").
application = BindPublisherLoop(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            "websocket": OriginValidator(SessionAuthMiddleware(URLRouter(websocket_urlpatterns))),
        }
    )
)

# Everything loaded so far (Django, the apps, Channels, Celery) lives as long as the process:
# take it out of the collector's full passes, which otherwise walk it all and held every socket's
# frames for 110-130 ms at 1,000 sockets (docs/deployment.md, "Many sockets on one process").
gc.freeze()
