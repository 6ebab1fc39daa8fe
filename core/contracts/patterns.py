"""Channel patterns: shell-style globs where `*` also matches dots (`game.*`, `raw.*`, `*`)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable

MAX_PATTERN_CHARS = 200


class ChannelFilter:
    """Matches channel names against a set of patterns, remembering answers per channel name.

    The number of distinct channel names is small and stable, so caching makes matching a dict
    lookup on the hot path.
    """

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns: list[str] = []
        self._cache: dict[str, bool] = {}
        self.add(patterns)

    def add(self, patterns: Iterable[str]) -> None:
        for pattern in patterns:
            if pattern not in self.patterns:
                self.patterns.append(pattern)
        self._cache.clear()

    def remove(self, patterns: Iterable[str]) -> None:
        gone = set(patterns)
        self.patterns = [pattern for pattern in self.patterns if pattern not in gone]
        self._cache.clear()

    def __call__(self, channel: str) -> bool:
        hit = self._cache.get(channel)
        if hit is None:
            hit = any(p == "*" or fnmatchcase(channel, p) for p in self.patterns)
            self._cache[channel] = hit
        return hit


def valid_patterns(value: object) -> list[str] | None:
    """The list of patterns in a request, or None when it is not a non-empty list of strings."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(item, str) and item and len(item) <= MAX_PATTERN_CHARS for item in value):
        return None
    return value
