"""The chat inbox (bounded) and the read-out limiter that keeps a message flood from becoming a
speech flood. Both are pure: time comes in as ``now``.

Inbox policy: at most ``limit`` messages are kept (``[voice] inbox_max``, default 500); past
that the oldest *read* message is dropped first, and only when every kept message is unread the
oldest unread one (counted in ``dropped``). Read messages stay listed (D-Bus ListMessages).

Read-out policy: at most ``per_minute`` chat utterances in any 60 s (``[voice]
max_readouts_per_min``, default 4). The last of those is kept for a summary: once messages are
held, the car says "12 more messages. Say read my messages to hear them." after
SUMMARY_QUIET_S without another one (and when the minute allows), so a burst of 2,000 chats is
at most ``per_minute`` utterances. Held messages stay unread in the inbox.
"""

from __future__ import annotations

import collections
from collections.abc import Collection
from dataclasses import dataclass, field

#: Chat utterances are counted over this window.
WINDOW_S = 60.0
#: The summary of held messages waits for this much quiet (the burst is over).
SUMMARY_QUIET_S = 3.0


@dataclass(frozen=True)
class ChatMessage:
    """A message from a group."""

    sender: str
    group: str
    text: str
    timestamp: float
    ident: int = field(default=0, compare=False)


class Inbox:
    """Messages, oldest first, read or not; bounded (see the module's policy)."""

    def __init__(self, limit: int = 500) -> None:
        self.limit = max(1, limit)
        self.messages: list[ChatMessage] = []
        self.read: set[int] = set()
        self.dropped = 0
        self._next = 1

    @property
    def unread(self) -> list[ChatMessage]:
        """Unread messages, oldest first."""
        return [m for m in self.messages if m.ident not in self.read]

    def add(self, sender: str, group: str, text: str, timestamp: float) -> ChatMessage:
        """A message arrived (the oldest read one goes when the inbox is full)."""
        msg = ChatMessage(sender, group, text, timestamp, self._next)
        self._next += 1
        self.messages.append(msg)
        if len(self.messages) > self.limit:
            victim = next((m for m in self.messages if m.ident in self.read), self.messages[0])
            self.messages.remove(victim)
            self.read.discard(victim.ident)
            self.dropped += 1
        return msg

    def take(self, group: str | None, skip: Collection[int] = ()) -> list[ChatMessage]:
        """Mark read and return unread messages (of one group, not those in ``skip``), oldest
        first."""
        picked = [m for m in self.unread
                  if (group is None or m.group == group) and m.ident not in skip]
        self.read.update(m.ident for m in picked)
        return sorted(picked, key=lambda m: m.timestamp)

    def mark_read(self, ident: int) -> None:
        """A message was read aloud in full."""
        if any(m.ident == ident for m in self.messages):
            self.read.add(ident)

    def recent(self, limit: int = 50) -> list[tuple[ChatMessage, bool]]:
        """The newest messages with whether each was read, newest first."""
        return [(m, m.ident in self.read) for m in reversed(self.messages[-limit:])]


class ReadOutLimiter:
    """At most ``per_minute`` chat utterances per minute, the last one a summary of the rest."""

    def __init__(self, per_minute: int = 4) -> None:
        self.per_minute = max(1, per_minute)
        self.times: collections.deque[float] = collections.deque()
        self.held = 0
        self.last_held = 0.0

    def allow(self, now: float) -> bool:
        """May one more message be spoken now? If not, it is counted for the summary."""
        self._prune(now)
        if self.held == 0 and len(self.times) < self.per_minute - 1:
            self.times.append(now)
            return True
        self.held += 1
        self.last_held = now
        return False

    def due(self, now: float) -> float | None:
        """When the summary of held messages may be said (None: nothing held)."""
        if not self.held:
            return None
        self._prune(now)
        free = self.times[0] + WINDOW_S if len(self.times) >= self.per_minute else now
        return max(self.last_held + SUMMARY_QUIET_S, free)

    def summary(self, now: float) -> int:
        """How many messages to summarise now (0: not yet, or none held)."""
        due = self.due(now)
        if due is None or now < due:
            return 0
        count, self.held = self.held, 0
        self.times.append(now)
        return count

    def _prune(self, now: float) -> None:
        while self.times and now - self.times[0] >= WINDOW_S:
            self.times.popleft()
