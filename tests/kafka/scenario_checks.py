"""What every client scenario script in this directory reports with: one "pass: ..." line per
scenario, "FAIL: ..." and a non-zero exit on the first failure, and bounded waits. Imported
by the scripts (Python puts a script's own directory on its import path)."""

import asyncio
import sys
import time


def check(condition, what):
    """Ends the run with "FAIL: what" unless `condition` holds."""
    if not condition:
        print(f"FAIL: {what}", flush=True)
        sys.exit(1)


def passed(scenario):
    print(f"pass: {scenario}", flush=True)


def wait_for(what, condition, seconds):
    """Polls `condition` every 100 ms for up to `seconds`; fails the run when it never holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    check(False, f"timed out waiting for {what}")


async def wait_for_async(what, condition, seconds):
    """`wait_for` for asyncio scripts: sleeps without blocking the event loop."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        await asyncio.sleep(0.1)
    check(False, f"timed out waiting for {what}")
