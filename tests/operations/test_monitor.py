"""The monitor's lease: a server that stops the ordinary way gives it up as it exits."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from taskstore.operations.models import Lease
from tests import services
from tests.live.client import http
from tests.operations.support import fast_env
from tests.support.markers import REAL_SERVICES
from tests.support.processes import daphne, wait_for

pytestmark = REAL_SERVICES

# A broker of this test's own (a Redis database nothing else in the suite uses as its broker but
# the queue-depth tests), so the lease, which is per broker, is not one the suite's other
# processes hold.
OWN_BROKER = services.REDIS_URL.rsplit("/", 1)[0] + "/7"


def test_a_server_stopped_with_sigterm_gives_the_monitor_lease_up(service_env: dict[str, str]) -> None:
    proc, port = daphne(fast_env(service_env, CELERY_BROKER_URL=OWN_BROKER))
    try:
        http(port, "GET", "/api/tasks/")  # the monitor starts with the first request
        assert proc.proc is not None
        marker = f":{proc.proc.pid}:"

        def held() -> Any:
            return Lease.objects.filter(holder__contains=marker, expires__gt=timezone.now()).first()

        lease = wait_for(held, 15, "the server to take the monitor lease")
        assert lease.expires > timezone.now()  # held for three rounds (2 s at the least) ahead
    finally:
        proc.stop()
    # No waiting: the lease was given up as the process exited, not left to expire.
    lease.refresh_from_db()
    assert marker in lease.holder
    assert lease.expires <= timezone.now()
