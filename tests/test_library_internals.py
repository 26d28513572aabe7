"""The attributes of other libraries that taskstore reads without a public API for them, each
used in one module only; these tests fail when a release changes one under it (and say where).

- asgiref's record of the loop behind ``sync_to_async`` (taskstore.calling_loop);
- daphne's ``send`` and Twisted's write buffer (taskstore.consumers.outbox);
- channels-redis' pub/sub layer naming and shards (taskstore.pubsub_batch);
- channels-redis' core layer storage and message format (taskstore.core_groups,
  taskstore.core_reader): tests/test_core_groups.py;
- Channels' rule for handler names (taskstore.consumers.base.LiveConsumer.dispatch).

And one thing that needs no internals any more: a forked process publishes through the channel
layer it inherited (channels-redis keeps a connection pool per event loop).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import warnings
from typing import Any
from uuid import uuid4

import pytest
from asgiref.sync import sync_to_async

from taskstore import pubsub_batch
from taskstore.calling_loop import calling_loop
from taskstore.consumers import outbox

# --- asgiref -------------------------------------------------------------------------------------


@pytest.mark.parametrize("thread_sensitive", [True, False])
async def test_sync_code_run_by_sync_to_async_finds_the_loop_that_called_it(thread_sensitive: bool) -> None:
    found = await sync_to_async(calling_loop, thread_sensitive=thread_sensitive)()
    assert found is asyncio.get_running_loop(), (
        "asgiref no longer keeps SyncToAsync.threadlocal.main_event_loop"
    )


def test_a_thread_no_coroutine_called_has_no_calling_loop() -> None:
    found: list[object] = []
    thread = threading.Thread(target=lambda: found.append(calling_loop()))
    thread.start()
    thread.join(timeout=10)
    assert found == [None]


# --- daphne and Twisted --------------------------------------------------------------------------


class _Reactor:
    """Just enough of a Twisted reactor for a transport to buffer writes."""

    def addWriter(self, writer: object) -> None:
        pass


class _Protocol:
    """Stands in for daphne's WebSocket protocol: takes replies, has a real Twisted transport."""

    def __init__(self) -> None:
        from twisted.internet.abstract import FileDescriptor

        self.replies: list[dict[str, Any]] = []
        self.transport = FileDescriptor(reactor=_Reactor())
        self.transport.connected = 1

    def handle_reply(self, message: dict[str, Any]) -> None:
        self.replies.append(message)


async def test_daphnes_send_is_found_behind_channels_session_middleware() -> None:
    from channels.sessions import SessionMiddlewareStack
    from daphne.server import Server

    sends: asyncio.Queue[Any] = asyncio.Queue()

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await sends.put(send)

    server = Server(application=SessionMiddlewareStack(application), endpoints=["tcp:port=0"])
    server.connections = {}  # (daphne makes it in run(), which would listen)
    protocol = _Protocol()
    server.connections[protocol] = {"connected": 0}
    scope = {"type": "websocket", "path": "/ws/tasks/", "headers": [], "query_string": b""}
    server.create_application(protocol, scope)
    send = await asyncio.wait_for(sends.get(), timeout=5)

    direct = outbox.direct_send(send)
    assert direct is not None, "daphne's send is no longer partial(Server.handle_reply, protocol)"
    direct({"type": "websocket.send", "text": "{}"})
    assert protocol.replies == [{"type": "websocket.send", "text": "{}"}]
    server.connections[protocol]["disconnected"] = 1
    direct({"type": "websocket.send", "text": "late"})
    assert len(protocol.replies) == 1  # a closed connection takes nothing, as in daphne

    held = outbox.server_buffer(send)
    assert held() == 0
    protocol.transport.write(b"x" * 100)
    assert held() == 100, "Twisted's FileDescriptor keeps its write buffer elsewhere"
    server.connections[protocol]["application_instance"].cancel()


def test_other_servers_sends_are_left_alone() -> None:
    async def send(event: dict[str, Any]) -> None:
        pass

    assert outbox.direct_send(send) is None
    assert outbox.server_buffer(send)() == 0


# --- channels-redis' pub/sub layer ---------------------------------------------------------------


@pytest.mark.redis
async def test_the_pubsub_batch_publishes_through_the_layers_own_naming(redis_url: str) -> None:
    from channels_redis.pubsub import RedisPubSubChannelLayer

    layer = RedisPubSubChannelLayer(hosts=[redis_url], prefix=f"test-{uuid4().hex[:8]}")
    channel = await layer.new_channel()
    await layer.group_add("watched", channel)
    message = {"type": "test.message", "n": 1}
    try:
        results = await pubsub_batch.send(layer, [("watched", message), ("nobody", message)])
        assert results == [None, None], "this channels-redis has no pub/sub internals the batch knows"
        assert await asyncio.wait_for(layer.receive(channel), timeout=5) == message
    finally:
        await layer.group_discard("watched", channel)
        await layer.flush()


# --- after a fork --------------------------------------------------------------------------------


def _publish_in_child(group: str, message: dict[str, Any], done: Any) -> None:
    from taskstore.publisher import publisher

    publisher.publish([(group, message)])
    done.put(publisher.flush(timeout=10))


@pytest.mark.redis
def test_a_forked_process_publishes_through_the_layer_it_inherited(redis_url: str) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from taskstore.publisher import publisher

    layer = get_channel_layer()
    group = f"fork-{uuid4().hex}"
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    # The parent has sent from its own loop first, so the child inherits a layer in use.
    publisher.publish([(group, {"type": "test.message", "from": "parent"})])
    assert publisher.flush(timeout=10)
    context = multiprocessing.get_context("fork")
    done = context.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # (fork with threads, Python 3.12+)
        child = context.Process(
            target=_publish_in_child, args=(group, {"type": "test.message", "from": "child"}, done)
        )
        child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert done.get(timeout=5) is True

    async def receive_two() -> list[str]:
        return [(await asyncio.wait_for(layer.receive(channel), timeout=5))["from"] for _ in range(2)]

    assert async_to_sync(receive_two)() == ["parent", "child"]
    async_to_sync(layer.group_discard)(group, channel)


# --- Channels' handler names ---------------------------------------------------------------------


def test_channels_names_handlers_as_its_documentation_says() -> None:
    # LiveConsumer.dispatch finds handlers with Channels' own rule (without the per-message
    # database clean-up of Channels' dispatch): "taskstore.task" is handled by taskstore_task.
    from channels.consumer import get_handler_name

    assert get_handler_name({"type": "taskstore.task"}) == "taskstore_task"
    with pytest.raises(ValueError):
        get_handler_name({"type": "_private.thing"})
    with pytest.raises(ValueError):
        get_handler_name({"text": "no type"})
