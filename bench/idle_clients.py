#!/usr/bin/env python3
"""Opens N keep-alive HTTP/1.1 connections to a proxy, sends one request on
each, reads the answer, then holds them all idle until it is terminated or a
deadline passes. Prints "READY <open>" once every connection is idle, so the
harness can read the proxy's memory. Bounded: every step has a timeout."""
import asyncio
import sys

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n"


async def open_one(port, gate, held):
    async with gate:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), 10)
            writer.write(REQUEST)
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            # The answer body is tiny; whatever is left stays in the buffer.
            held.append(writer)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            pass


async def main():
    port, count, hold_s = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    gate = asyncio.Semaphore(256)
    held = []
    await asyncio.wait_for(
        asyncio.gather(*(open_one(port, gate, held) for _ in range(count))), 120)
    print(f"READY {len(held)}", flush=True)
    await asyncio.sleep(hold_s)
    for writer in held:
        writer.close()


if __name__ == "__main__":
    asyncio.run(main())
