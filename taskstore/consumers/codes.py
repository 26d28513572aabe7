"""The WebSocket protocol's codes (docs/protocol.md).

Close codes an application sends must be 4000-4999 (daphne refuses 1008/1009 from the
application); the convention here is 4000 + the HTTP status that means the same.
"""

# Close codes.
CLOSE_UNAUTHENTICATED = 4401  # the feed needs a logged-in user, and its session ended
CLOSE_FORBIDDEN = 4403  # a staff feed whose user lost staff rights
CLOSE_TOO_SLOW = 4408  # the client stopped reading: its unsent frames passed TASKSTORE_SEND_BUFFER_BYTES
CLOSE_FRAME_TOO_LARGE = 4413  # a client frame over TASKSTORE_MAX_FRAME_BYTES
CLOSE_FLOODING = 4429  # frames kept coming while rate limited

# Error codes, in {"type": "error", "code": …} frames. None of them closes the socket.
BAD_REQUEST = "bad_request"
FORBIDDEN = "forbidden"
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
RATE_LIMITED = "rate_limited"
CONFLICT = "conflict"  # a control action that does not apply to its target now
UNAVAILABLE = "unavailable"  # the broker could not be reached for a control action

# Server frame types.
TASK_UPDATE = "task.update"
GROUP_UPDATE = "group.update"
ERROR = "error"
PONG = "pong"
# On staff feeds (taskstore.consumers.operations).
WORKER_UPDATE = "worker.update"
QUEUE_UPDATE = "queue.update"
ACTION_RECORDED = "action.recorded"
