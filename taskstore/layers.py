"""Channel-layer configuration: channels-redis options that keep idle sockets alive.

redis-py 8 made 5 s the default socket read timeout, the same as channels-redis' 5 s blocking
read (``brpop_timeout``), so an idle consumer's read times out and its socket drops (redis-py
#4091). Hosts need a read timeout above the blocking read. :func:`redis_host` builds such a
host; :func:`fill_read_timeouts` gives one to every channels-redis host that names none, which
taskstore does at start (``TaskstoreConfig.ready``); the system check ``taskstore.W004`` reports
a host whose own timeout is too short.
"""

from __future__ import annotations

from typing import Any

# channels-redis' blocking read, seconds (RedisChannelLayer.brpop_timeout).
BLOCKING_READ_SECONDS = 5
# A read timeout above the blocking read that still notices a dead server.
READ_TIMEOUT_SECONDS = 30
HOST_OPTIONS: dict[str, Any] = {
    "socket_timeout": READ_TIMEOUT_SECONDS,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
}


def redis_host(url: str, **options: Any) -> dict[str, Any]:
    """A channels-redis host entry for ``url`` with a safe read timeout (``options`` override)."""
    return {"address": url, **HOST_OPTIONS, **options}


def redis_channel_layer(url: str, **config: Any) -> dict[str, Any]:
    """A ``CHANNEL_LAYERS`` entry for channels-redis on ``url``; ``config`` adds to its CONFIG."""
    return {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [redis_host(url)], **config},
    }


def redis_pubsub_channel_layer(url: str, **config: Any) -> dict[str, Any]:
    """A ``CHANNEL_LAYERS`` entry for channels-redis' pub/sub layer on ``url``.

    One ``PUBLISH`` per ``group_send``, delivered once to each subscribed process; nothing is
    stored, so a process that is not listening at that moment misses the message (the
    subscribers' gap filling and periodic check repair that from the database).
    ``capacity`` and ``expiry`` (core-layer options) are ignored.
    """
    config = {k: v for k, v in config.items() if k not in ("capacity", "expiry", "group_expiry")}
    return {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [redis_host(url)], **config},
    }


def redis_hosts(layer: dict[str, Any]) -> list[Any] | None:
    """The ``hosts`` list of a channels-redis layer entry, or None for another backend."""
    if not str(layer.get("BACKEND", "")).startswith("channels_redis."):
        return None
    hosts = (layer.get("CONFIG") or {}).get("hosts")
    return hosts if isinstance(hosts, list) else None


def fill_read_timeouts(layers: dict[str, Any]) -> list[str]:
    """Give every channels-redis host in ``layers`` (CHANNEL_LAYERS) that names no read timeout
    the safe options, in place. Returns the aliases of the layers changed.

    Hosts given as URLs or ``(host, port)`` pairs become dicts; Sentinel entries are left alone.
    """
    changed = []
    for alias, layer in layers.items():
        hosts = redis_hosts(layer) if isinstance(layer, dict) else None
        if not hosts:
            continue
        filled = [_filled(host) for host in hosts]
        if filled != hosts:
            hosts[:] = filled
            changed.append(alias)
    return changed


def _filled(host: Any) -> Any:
    if isinstance(host, str):
        return redis_host(host)
    if isinstance(host, (tuple, list)) and len(host) == 2:
        return redis_host(f"redis://{host[0]}:{host[1]}")
    if isinstance(host, dict) and "socket_timeout" not in host and "sentinels" not in host:
        return {**HOST_OPTIONS, **host}
    return host


def short_read_timeouts(layers: dict[str, Any]) -> list[str]:
    """The aliases of channels-redis layers with a host whose read timeout is not above the
    blocking read (so idle sockets drop)."""
    short = []
    for alias, layer in layers.items():
        for host in (redis_hosts(layer) if isinstance(layer, dict) else None) or []:
            timeout = host.get("socket_timeout") if isinstance(host, dict) else None
            if isinstance(timeout, (int, float)) and timeout <= BLOCKING_READ_SECONDS:
                short.append(alias)
                break
    return short
