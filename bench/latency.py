"""A TCP proxy that adds a fixed one-way delay, to model Redis across a network.

On loopback a Redis round trip costs ~30 us, so batching round trips barely shows;
across availability zones it is ~0.5-1 ms, and a producer that waits for one per
chunk is bound by it. Each forwarded read is delivered ``delay`` seconds later, in
order, in both directions, so a request/response pair costs ``2 * delay`` extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(65536):
            # Scheduled, not awaited: later reads are not held behind earlier delays.
            loop.call_later(delay, writer.write, data)
        await asyncio.sleep(delay)  # let the scheduled writes land
    finally:
        writer.close()


async def _serve(target_port: int, delay: float, ready: threading.Event, box: dict) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        # Cancelled at shutdown; suppressed, or asyncio logs every cancelled connection.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(_pump(reader, up_writer, delay), _pump(up_reader, writer, delay))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    box["port"] = server.sockets[0].getsockname()[1]
    box["stop"] = asyncio.Event()
    ready.set()
    async with server:
        await box["stop"].wait()
    pumps = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in pumps:
        task.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)


@contextmanager
def delayed_proxy(target_port: int, one_way_delay: float) -> Iterator[int]:
    """Run the proxy in a background thread; yields the port to connect to."""
    ready = threading.Event()
    box: dict = {}
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=loop.run_until_complete,
        args=(_serve(target_port, one_way_delay, ready, box),),
        daemon=True,
    )
    thread.start()
    ready.wait(10)
    try:
        yield int(box["port"])
    finally:
        loop.call_soon_threadsafe(box["stop"].set)
        thread.join(10)
