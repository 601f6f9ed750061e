"""Helpers for reading client streams in tests, each bounded so a hang fails instead of stalling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from tether.transport import StreamEvent

HANG_GUARD = 60.0
"""Seconds after which a test is considered hung; never a latency assertion."""


async def drain(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    """Every remaining event, until the stream ends or fails."""
    async with asyncio.timeout(HANG_GUARD):
        return [event async for event in events]
