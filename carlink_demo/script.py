"""Voice steps in the demo: the drivers' turns, run in order, each once the last one has settled.

A step is typed text or a WAV file pushed through the car's real recognizer. Before a step the
car must have finished speaking (a driver does not talk over the car); after it the whole fleet
must settle: every car quiet and no new event for :data:`QUIET_S`. So a message sent by car1 has
been read out by car2 before the next step starts, without fixed sleeps.

With two or more cars and no steps of its own, the demo plays :func:`builtin_script`: a message
to the car club, announced in every other car and read out in car2 when its driver asks; a
roadside help request heard by the nearby helpers only (a distance, no position), answered by
car2, whose answer car1 hears and which alone gets car1's exact position; then car1 cancels it
and car2 hears that car1 no longer needs help. Its utterances are rendered with espeak-ng and
go through the recognizer (push-to-talk), or are typed when espeak-ng is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .args import Step
from carlinkd.errors import VoiceError
from carlinkd.events import (BusStats, Event, HelpDetail, HelpRequest, HelpResponse, OutboxStats,
                     SignalsUpdated, Spoken, VoiceState)
from carlinkd.voice.audio import WavSource, encode_wav
from carlinkd.voice.service import VoiceService
from carlinkd.voice.tts import EspeakSpeaker

# The fleet has settled when no car has said or received anything for this long.
QUIET_S = 1.0
SETTLE_TIMEOUT_S = 30.0
# How long an expected reaction (a read-out in another car, a reply) may take.
EXPECT_TIMEOUT_S = 20.0
# Telemetry is not "something happening" for settling.
_BACKGROUND = (SignalsUpdated, BusStats, OutboxStats)


class Journal:
    """The notable events of every car in arrival order, and ways to wait on them."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Event]] = []
        self._changed = asyncio.Event()

    def add(self, car: str, event: Event) -> None:
        """One hub event from a car (telemetry only wakes waiters)."""
        if not isinstance(event, _BACKGROUND):
            self.entries.append((car, event))
        self._changed.set()

    def mark(self) -> int:
        """Where the journal stands now (for :meth:`find`)."""
        return len(self.entries)

    def find(self, car: str, test: Callable[[Event], bool], since: int = 0) -> Event | None:
        """The first event of ``car`` since ``since`` passing ``test``."""
        for who, event in self.entries[since:]:
            if who == car and test(event):
                return event
        return None

    async def until(self, condition: Callable[[], object], timeout: float) -> bool:
        """Wait until ``condition()`` is true (checked at every event); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            self._changed.clear()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return bool(condition())
        return True

    async def quiet(self, period: float) -> bool:
        """Wait ``period`` seconds; True when nothing notable happened meanwhile."""
        before = len(self.entries)
        await asyncio.sleep(period)
        return len(self.entries) == before


@dataclass(frozen=True)
class Expect:
    """A reaction a step should cause: an event of one car, described for the output."""

    car: str
    what: str
    test: Callable[[Event], bool]


@dataclass(frozen=True)
class ScriptStep:
    """A step with the words to speak for it and the reactions to wait for."""

    step: Step
    spoken: str = ""
    expect: tuple[Expect, ...] = ()


@dataclass
class Outcome:
    """What a run of steps showed."""

    missed: list[str] = field(default_factory=list)
    done: int = 0


class Fleet(Protocol):
    """What the step runner needs from the demo."""

    journal: Journal

    def voice(self, car: str) -> VoiceService:
        """The voice service of a car."""

    def voices(self) -> list[VoiceService]:
        """Every car's voice service."""

    def line(self, who: str, text: str) -> None:
        """An output line."""


def _said(car: str, fragment: str, what: str) -> Expect:
    """``car`` says something containing ``fragment``."""
    low = fragment.lower()
    return Expect(car, what, lambda e: isinstance(e, Spoken) and low in e.text.lower())


def builtin_script(cars: Sequence[str], far: str | None) -> list[ScriptStep]:
    """The platform tour for two or more cars (see the module docstring)."""
    first, second = cars[0], cars[1]
    others, near = cars[1:], [c for c in cars[1:] if c != far]

    def help_request(e: Event) -> bool:
        return isinstance(e, HelpRequest) and e.sender == first

    def answer(e: Event) -> bool:
        return isinstance(e, HelpResponse) and e.responder == second

    def offered(e: Event) -> bool:
        return isinstance(e, VoiceState) and e.state == "confirming"

    def detail(e: Event) -> bool:
        return isinstance(e, HelpDetail) and e.sender == first

    # Other people's messages are announced by default ([voice] incoming_messages = announce)
    announced = tuple(_said(c, f"new message from {first} in car club",
                            f"announces {first}'s message") for c in others)
    heard = tuple(Expect(c, f"gets {first}'s help request", help_request) for c in near)
    return [
        ScriptStep(Step(first, "say", "send a message to car club: running late"),
                   "send a message to car club running late"),
        ScriptStep(Step(first, "say", "yes"), "yes", announced),
        ScriptStep(Step(second, "say", "read my messages"), "read my messages",
                   (_said(second, "running late", f"reads out {first}'s message"),)),
        ScriptStep(Step(first, "say", "call roadside help"), "call roadside help"),
        ScriptStep(Step(first, "say", "yes"), "yes",
                   (*heard, Expect(second, "offers to answer the help request", offered))),
        ScriptStep(Step(second, "say", "yes"), "yes",
                   (Expect(first, f"gets {second}'s answer", answer),
                    _said(first, "on my way", f"says {second}'s answer"),
                    Expect(second, f"alone gets {first}'s exact position", detail))),
        ScriptStep(Step(first, "say", "cancel the help request"), "cancel the help request",
                   (_said(second, "no longer needs help",
                          f"hears that {first} no longer needs help"),)),
    ]


def render_speech(script: list[ScriptStep], directory: Path, speaker: EspeakSpeaker,
                  lang: str) -> list[ScriptStep]:
    """The script with each utterance synthesized to a WAV file (push-to-talk steps); blocking."""
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for n, item in enumerate(script, 1):
        samples, rate = speaker.synthesize(item.spoken or item.step.text, lang)
        path = directory / f"{n:02d}-{item.step.car}.wav"
        path.write_bytes(encode_wav(samples, rate))
        out.append(ScriptStep(Step(item.step.car, "ptt", wav=path), item.spoken, item.expect))
    return out


async def spoken_script(script: list[ScriptStep], directory: Path, voices: dict[str, str],
                        lang: str) -> tuple[list[ScriptStep], str]:
    """The script as push-to-talk WAVs when espeak-ng is here, else typed; and which it is."""
    try:
        speaker = EspeakSpeaker(voices)
        rendered = await asyncio.to_thread(render_speech, script, directory, speaker, lang)
    except VoiceError as err:
        return script, f"typed text (no speech: {err})"
    return rendered, "espeak-ng speech through the recognizer (push-to-talk)"


async def run_steps(fleet: Fleet, script: Sequence[ScriptStep]) -> Outcome:
    """Run the steps in order, each after the last has settled; report each expectation."""
    outcome = Outcome()
    journal = fleet.journal
    for n, item in enumerate(script, 1):
        step = item.step
        voice = fleet.voice(step.car)
        await voice.wait_quiet()  # the driver waits for the car to finish speaking
        since = journal.mark()
        label = f'"{item.spoken}" as {step.wav.name}' if step.wav and item.spoken else \
            step.describe()
        fleet.line("demo", f"step {n}/{len(script)}: {step.car} driver: {label}")
        if step.kind == "say":
            await voice.handle_text(step.text)
        else:
            assert step.wav is not None
            await voice.push_to_talk(WavSource(step.wav))
        for exp in item.expect:
            def seen(exp: Expect = exp, since: int = since) -> bool:
                return journal.find(exp.car, exp.test, since) is not None
            if await journal.until(seen, EXPECT_TIMEOUT_S):
                fleet.line("demo", f"ok: {exp.car} {exp.what}")
            else:
                fleet.line("demo", f"MISSED: {exp.car} {exp.what} (waited "
                                   f"{EXPECT_TIMEOUT_S:.0f} s)")
                outcome.missed.append(f"{exp.car} {exp.what}")
        await settle(fleet, fleet.voices())
        outcome.done = n
    return outcome


async def settle(fleet: Fleet, voices: Sequence[VoiceService]) -> bool:
    """Until every car is quiet and nothing happened for QUIET_S (False after a timeout)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    while loop.time() < deadline:
        try:
            await asyncio.wait_for(asyncio.gather(*(v.wait_quiet() for v in voices)),
                                   max(0.0, deadline - loop.time()))
        except TimeoutError:
            return False
        if await fleet.journal.quiet(QUIET_S):
            return True
    return False
