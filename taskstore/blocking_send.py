"""Publishing from the calling thread where no event loop runs: a Celery worker's pool process, its
main process, a producer calling ``.delay()``, a WSGI view.

There the publisher used to hand every batch to a sending thread of its own, which runs an event
loop. For one transition at a time (what a producer or a pool child publishes) the hand-over cost
more than the send: waking the loop, its turns and its socket calls took about 370-470 µs of
the process's CPU per batch, where the scripts sent with a synchronous client from the calling
thread take about 120 (``bench/worker_overhead.py``, docs/benchmarks.md "Publishing from the
calling thread"). So with channels-redis' layers the publisher sends the batch here, in the
calling thread, through a synchronous redis-py client per Redis host of the layer, with the
same scripts as from a loop: the core layer's two (taskstore.core_groups), the pub/sub layer's
one (taskstore.pubsub_batch).

The caller waits for the round trip, so the clients fail fast: :data:`TIMEOUT_SECONDS` to connect
and to read, and no retries of their own. Whatever did not go out is the publisher's to queue on
its sending thread, which retries it as before; until that queue is empty every later batch
queues behind it, so a process's messages still leave in order. Other layers (the in-memory
layer, a layer whose hosts are reached through Sentinels) keep the sending thread.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from taskstore import core_groups, pubsub_batch

Message = tuple[str, dict[str, Any]]

# Longest a caller waits to connect to Redis, or for a reply, before its batch goes to the
# sending thread instead.
TIMEOUT_SECONDS = 1.0


# Sends a batch through a client per Redis host (the function given it, keyed by host); one
# result per message, or None when the layer cannot be sent to from here.
Exchange = Callable[[list[Message], Callable[[Any], Any]], "list[Any] | None"]


class BlockingSender:
    """Sends batches to one channel-redis layer from whichever thread calls; one client per Redis
    host. A forked child makes its own (the publisher starts afresh there)."""

    def __init__(self, layer: Any, exchange: Exchange, host_of: Callable[[Any], dict[str, Any]]) -> None:
        self.layer = layer
        self._exchange = exchange
        self._host_of = host_of  # a host's key (its index, or the shard) to its host entry
        self._clients: dict[Any, Any] = {}

    def send(self, messages: list[Message]) -> list[Message] | None:
        """Send ``messages``; return those that did not go out (empty when all did), or None
        when the layer cannot be sent to from here."""
        results = self._exchange(messages, self._client)
        if results is None:
            return None
        return [
            message
            for message, result in zip(messages, results, strict=True)
            if isinstance(result, Exception)
        ]

    def close(self) -> None:
        """Close the clients' connections."""
        clients, self._clients = self._clients, {}
        for client in clients.values():
            # The pool is the client's own, but a client given a pool does not close it.
            client.connection_pool.disconnect()

    def _client(self, key: Any) -> Any:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = blocking_client(self._host_of(key))
        return client


def blocking_client(host: dict[str, Any]) -> Any:
    """A synchronous redis-py client for a channels-redis host entry (as channels-redis builds its
    own asyncio pool from it), with :data:`TIMEOUT_SECONDS` and no retries."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    options = dict(host)
    address = options.pop("address", None)
    for name in ("socket_timeout", "socket_connect_timeout"):
        given = options.get(name)
        options[name] = min(given, TIMEOUT_SECONDS) if isinstance(given, (int, float)) else TIMEOUT_SECONDS
    options["retry"] = Retry(NoBackoff(), 0)
    pool = redis.ConnectionPool.from_url(address, **options) if address else redis.ConnectionPool(**options)
    return redis.Redis(connection_pool=pool)


def for_layer(layer: Any) -> BlockingSender | None:
    """A sender for ``layer``, or None when it is not a channels-redis layer this can reach
    directly (a Sentinel-configured one reaches its hosts through the Sentinels)."""
    if core_groups.supports(layer):
        hosts = getattr(layer, "hosts", None)
        if not _direct(hosts):
            return None
        return BlockingSender(
            layer, partial(core_groups.send_blocking, layer), lambda index: layer.hosts[index]
        )
    if pubsub_batch.supports(layer):
        naming = pubsub_batch.naming_layer(layer)
        shards = getattr(naming, "_shards", None)
        if not shards or not _direct([getattr(shard, "host", None) for shard in shards]):
            return None
        return BlockingSender(
            layer, partial(pubsub_batch.send_blocking, layer, naming), lambda shard: shard.host
        )
    return None


def _direct(hosts: Any) -> bool:
    """Whether ``hosts`` are host entries a client connects to directly."""
    return bool(hosts) and all(isinstance(host, dict) and "master_name" not in host for host in hosts)
