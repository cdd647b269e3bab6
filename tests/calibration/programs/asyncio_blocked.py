"""An asyncio server's handler calls time.sleep and crunches numbers inside the coroutine.

True verdict: loop-blocked, naming handle_request.
"""

import asyncio
import time


def checksum(limit: int) -> int:
    total = 0
    for number in range(limit):
        total += number % 11
    return total


async def handle_request(index: int) -> int:
    time.sleep(0.02)  # a blocking call on the event loop
    value = checksum(30_000)
    await asyncio.sleep(0)
    return value + index


async def main() -> None:
    await asyncio.gather(*(handle_request(index) for index in range(12)))


if __name__ == "__main__":
    asyncio.run(main())
