"""The WebSocket consumers."""
