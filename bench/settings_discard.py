"""Bench configuration (c0): as (c), but the channel layer discards every message."""

from bench.settings_taskstore import *  # noqa: F403

CHANNEL_LAYERS = {"default": {"BACKEND": "bench.layers.DiscardingChannelLayer"}}
