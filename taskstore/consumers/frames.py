"""Each live frame encoded once per process, not once per socket.

The hub (taskstore.fanout) hands the same message, the same document object, to every local
socket in turn; each of them needs the same text (one of two: staff see more fields). The last
few documents' frames are kept by identity, holding the documents so identities stay unique.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from taskstore.consumers import codes
from taskstore.documents import for_viewer

# Documents whose frames are kept: a fan-out pass uses one; a few cover interleaved messages.
KEPT = 8

_recent: deque[tuple[dict[str, Any], dict[bool, tuple[dict[str, Any], int]]]] = deque(maxlen=KEPT)


Frame = tuple[dict[str, Any], int]  # an ASGI ``websocket.send`` event (shared: never change it), bytes


def task_frame(document: dict[str, Any], staff: bool) -> Frame:
    """The ``task.update`` frame for ``document`` as staff or others see it, and its size in bytes."""
    frames = next((kept_frames for kept, kept_frames in _recent if kept is document), None)
    if frames is None:
        frames = {}
        _recent.append((document, frames))
    frame = frames.get(staff)
    if frame is None:
        frame = frames[staff] = text_frame({"type": codes.TASK_UPDATE, **for_viewer(document, staff=staff)})
    return frame


def text_frame(content: dict[str, Any]) -> Frame:
    """Any other frame, encoded for one socket."""
    text = json.dumps(content)
    return {"type": "websocket.send", "text": text}, len(text.encode())
