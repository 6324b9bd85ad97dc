"""Failed authentications per client address: past a limit within a window, an address is answered
429 until its oldest failure ages out. Keys are long and random, so this is not what keeps them
secret; it keeps a key-guessing or misconfigured client from costing the server a key check (and a
log line) per request, and it bounds its own memory whatever the number of addresses.

One throttle per process (each API replica keeps its own); the API's bearer check and the pages'
sign-in share it. The address is the one the proxy-header middleware settled on, so behind a
trusted proxy it is the caller's, not the proxy's.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

FAILURES = 20  # failed authentications an address may make within WINDOW seconds
WINDOW = 300.0
MAX_ADDRESSES = 10_000  # addresses remembered at once; the least recently failed are forgotten first


class AuthThrottle:
    """`retry_after(address)` before checking a credential, `failed(address)` when it was wrong."""

    def __init__(
        self,
        failures: int = FAILURES,
        window: float = WINDOW,
        max_addresses: int = MAX_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or window <= 0 or max_addresses < 1:
            raise ValueError("failures and max_addresses must be at least 1, window above 0")
        self.failures = failures
        self.window = window
        self.max_addresses = max_addresses
        self.clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float] | None:
        times = self._seen.get(address)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._seen[address]
            return None
        return times

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try again; 0 when it may now."""
        with self._lock:
            now = self.clock()
            times = self._recent(address, now)
            if times is None or len(times) < self.failures:
                return 0.0
            return max(times[0] + self.window - now, 0.001)

    def failed(self, address: str) -> None:
        with self._lock:
            now = self.clock()
            times = self._recent(address, now)
            if times is None:
                times = self._seen[address] = deque(maxlen=self.failures)
            times.append(now)
            self._seen.move_to_end(address)
            while len(self._seen) > self.max_addresses:
                self._seen.popitem(last=False)

    def __len__(self) -> int:
        return len(self._seen)


def client_address(scope_client: tuple[str, int] | list[object] | None) -> str:
    """The address part of an ASGI scope's `client` (unknown when the server gives none)."""
    return str(scope_client[0]) if scope_client else "unknown"
