"""Channel patterns: shell-style globs where `*` also matches dots (`game.*`, `raw.*`, `*`)."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable

MAX_PATTERN_CHARS = 200
# Verdicts one filter remembers. The catalogue has a few dozen channels; the bound only keeps names
# nobody chose (control messages, typos in a replay) from growing a filter's memory without end.
MAX_REMEMBERED_CHANNELS = 512


class ChannelFilter:
    """Matches channel names against a set of patterns, remembering the verdict per channel name.

    Channel names are few and stable, so after a channel's first event matching is one dict lookup,
    however many patterns the filter holds. Changing the patterns costs what changes, not what is
    held: adding tries only the new patterns, and only on the channels that were not matched yet;
    removing forgets only the verdicts that said yes. A client that sends thousands of patterns
    therefore cannot make each of its commands, or each event, cost more than its own input.
    """

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self._patterns: dict[str, None] = {}  # an ordered set: replies list patterns as they came
        self._verdicts: dict[str, bool] = {}
        self.add(patterns)

    @property
    def patterns(self) -> list[str]:
        return list(self._patterns)

    def __len__(self) -> int:
        return len(self._patterns)

    def new(self, patterns: Iterable[str]) -> list[str]:
        """The patterns among these the filter does not hold yet, each once, in their order."""
        return [pattern for pattern in dict.fromkeys(patterns) if pattern not in self._patterns]

    def add(self, patterns: Iterable[str]) -> list[str]:
        """Hold these patterns too; returns the ones that were new."""
        added = self.new(patterns)
        self._patterns.update(dict.fromkeys(added))
        for channel, hit in self._verdicts.items():
            if not hit and _matches_any(channel, added):
                self._verdicts[channel] = True
        return added

    def remove(self, patterns: Iterable[str]) -> None:
        for pattern in patterns:
            self._patterns.pop(pattern, None)
        self._verdicts = {channel: hit for channel, hit in self._verdicts.items() if not hit}

    def copy(self) -> ChannelFilter:
        """The same patterns and verdicts, unaffected by later changes to this filter."""
        twin = ChannelFilter()
        twin._patterns = dict(self._patterns)
        twin._verdicts = dict(self._verdicts)
        return twin

    def __call__(self, channel: str) -> bool:
        hit = self._verdicts.get(channel)
        if hit is None:
            hit = _matches_any(channel, self._patterns)
            if len(self._verdicts) >= MAX_REMEMBERED_CHANNELS:
                del self._verdicts[next(iter(self._verdicts))]  # the oldest verdict
            self._verdicts[channel] = hit
        return hit


def _matches_any(channel: str, patterns: Iterable[str]) -> bool:
    return any(pattern == "*" or fnmatchcase(channel, pattern) for pattern in patterns)


def valid_patterns(value: object) -> list[str] | None:
    """The list of patterns in a request, or None when it is not a non-empty list of strings."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(item, str) and item and len(item) <= MAX_PATTERN_CHARS for item in value):
        return None
    return value
