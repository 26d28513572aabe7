"""The WebSocket consumers: `/ws/tasks/` (tasks.py) and `/ws/feed/` (feed.py)."""
