"""A token bucket shared by all workers, plus a global pause for provider back-pressure."""

from __future__ import annotations

import threading
import time


class Timer:
    """Real time: what the dispatcher and the rate limiter wait on."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class VirtualTimer(Timer):
    """Simulated time for tests: sleeping advances the clock instantly."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
            self.slept += seconds


class RateLimiter:
    """At most ``rate`` messages per second (burst ``burst``); ``pause`` stops everyone a while.

    Time and sleeping are injected so tests run without real waiting.
    """

    def __init__(
        self, rate: float | None, burst: float | None = None, *, timer: Timer | None = None
    ) -> None:
        self.rate = rate
        self.capacity = burst if burst is not None else max(1.0, rate or 1.0)
        self.tokens = self.capacity
        timer = timer or Timer()
        self.monotonic = timer.monotonic
        self.sleep = timer.sleep
        self.updated = self.monotonic()
        self.paused_until = 0.0
        self.lock = threading.Lock()

    def pause(self, seconds: float) -> None:
        """Hold every worker back (429 Retry-After, 421 service unavailable)."""
        with self.lock:
            self.paused_until = max(self.paused_until, self.monotonic() + seconds)

    def acquire(self, n: int = 1, stop: threading.Event | None = None) -> bool:
        """Wait until ``n`` messages may go; False if ``stop`` was set while waiting."""
        while True:
            with self.lock:
                now = self.monotonic()
                wait = self.paused_until - now
                if wait <= 0:
                    if self.rate is None:
                        return True
                    self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
                    self.updated = now
                    need = min(float(n), self.capacity)
                    if self.tokens >= need:
                        self.tokens -= need
                        return True
                    wait = (need - self.tokens) / self.rate
            if stop is not None and stop.is_set():
                return False
            self.sleep(min(wait, 0.5))
