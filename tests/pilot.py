"""Waiting in Textual pilot tests: for the app's workers, or for a condition (pilot.pause, never sleep)."""

from __future__ import annotations


async def settle(app, pilot) -> None:
    """Workers done, twice: a worker may start another (hardware detection starts after the first paint)."""
    for _ in range(2):
        await app.workers.wait_for_complete()
        await pilot.pause()


async def until(pilot, cond, timeout: float = 60.0, step: float = 0.05) -> None:
    """Let the app run until `cond()` holds; AssertionError after `timeout` seconds."""
    waited = 0.0
    while not cond():
        if waited > timeout:
            raise AssertionError("condition not reached in time")
        await pilot.pause(step)
        waited += step
    await pilot.pause()  # let a screen that was just pushed compose and mount
