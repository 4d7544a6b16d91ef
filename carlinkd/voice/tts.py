"""Speech out: one speaker interface over espeak-ng, a pure priority queue, and an async player.

:class:`SpeechQueue` decides what speaks (pure, no I/O): one utterance at a time; a critical
alert preempts anything else (the preempted utterance is said again afterwards); other alerts
go ahead of replies, and chat read-outs wait behind both; nothing speaks while the driver is
speaking, and the driver starting to speak (barge-in) stops the current utterance at once and
drops stale dialog replies. :class:`SpeechOutput` carries its decisions out on the event loop:
synthesis in an executor, playback to a sound device or WAV files, and a call-back as each
utterance starts and ends.
"""

from __future__ import annotations

import asyncio
import enum
import heapq
import itertools
import logging
import shutil
import subprocess
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from .settings import VoiceConfig
from ..errors import SpeechError
from .audio import Samples, decode_wav, encode_wav

log = logging.getLogger(__name__)

ESPEAK_TIMEOUT_S = 20.0


class Priority(enum.IntEnum):
    """Lower value speaks first."""

    CRITICAL = 0   # safety alerts: preempt everything
    ALERT = 1      # other alerts, help requests: go first, but cut nothing short
    REPLY = 2      # dialog prompts and answers
    CHAT = 3       # message read-outs: wait for everything else

    @classmethod
    def parse(cls, name: str) -> Priority:
        """From an event's priority string; unknown names count as replies."""
        return cls.__members__.get(name.upper(), cls.REPLY)


@dataclass(frozen=True, order=True)
class Utterance:
    """One thing to say."""

    priority: Priority
    seq: int
    text: str = field(compare=False)
    lang: str = field(compare=False, default="en")
    tag: str = field(compare=False, default="")  # the caller's name for it (e.g. a message)


@dataclass(frozen=True)
class Play:
    """Start saying this utterance."""

    utterance: Utterance


@dataclass(frozen=True)
class Stop:
    """Stop saying this utterance now."""

    utterance: Utterance


SpeechAction = Play | Stop


class SpeechQueue:
    """The pure scheduling core of speech output."""

    def __init__(self) -> None:
        self._heap: list[Utterance] = []
        self._seq = itertools.count()
        self.current: Utterance | None = None
        # The least urgent priority that may start now: CHAT (anything), CRITICAL while the
        # driver's reply is worked out, None while the driver speaks.
        self.may_start: Priority | None = Priority.CHAT

    def __len__(self) -> int:
        return len(self._heap)

    def say(self, text: str, priority: Priority = Priority.REPLY, lang: str = "en",
            tag: str = "") -> list[SpeechAction]:
        """Queue an utterance; returns what to do now."""
        utt = Utterance(priority, next(self._seq), text, lang, tag)
        heapq.heappush(self._heap, utt)
        cur = self.current
        if cur is not None and priority is Priority.CRITICAL and cur.priority > priority:
            heapq.heappush(self._heap, cur)  # said again after the alert
            self.current = None
            return [Stop(cur), *self._next()]
        return self._next()

    def finished(self, utt: Utterance) -> list[SpeechAction]:
        """The player finished (or failed) an utterance."""
        if self.current == utt:
            self.current = None
        return self._next()

    def driver_started(self) -> list[SpeechAction]:
        """Barge-in: stop speech at once, drop pending replies, hold until the driver stops."""
        self.may_start = None
        self._heap = [u for u in self._heap if u.priority is not Priority.REPLY]
        heapq.heapify(self._heap)
        cur, self.current = self.current, None
        if cur is None:
            return []
        if cur.priority is Priority.CRITICAL:
            heapq.heappush(self._heap, cur)
        return [Stop(cur)]

    def withdraw(self, tags: Collection[str]) -> list[Utterance]:
        """Take queued (not playing) utterances with these tags out; returns them."""
        gone = [u for u in self._heap if u.tag in tags]
        if gone:
            self._heap = [u for u in self._heap if u.tag not in tags]
            heapq.heapify(self._heap)
        return gone

    def pending(self) -> list[Utterance]:
        """Queued utterances (not the one playing), in the order they would be said."""
        return sorted(self._heap)

    def reply_pending(self) -> list[SpeechAction]:
        """The driver finished and the reply is being worked out: only critical alerts may
        speak until :meth:`driver_stopped`, so the reply goes ahead of what was waiting."""
        self.may_start = Priority.CRITICAL
        return self._next()

    def driver_stopped(self) -> list[SpeechAction]:
        """The driver's turn is over (the reply is queued): queued speech may go on."""
        self.may_start = Priority.CHAT
        return self._next()

    def _next(self) -> list[SpeechAction]:
        if self.current is not None or not self._heap or self.may_start is None \
                or self._heap[0].priority > self.may_start:
            return []
        self.current = heapq.heappop(self._heap)
        return [Play(self.current)]


# --- synthesis ------------------------------------------------------------------------------


class Speaker(Protocol):
    """Text to audio."""

    def synthesize(self, text: str, lang: str) -> tuple[Samples, int]:
        """Samples and their rate for the text in a language."""


class SilentSpeaker:
    """No synthesizer installed: every utterance is silence (the dialog still runs, and the
    screen still shows its text); logged once at start-up by the caller."""

    def synthesize(self, text: str, lang: str) -> tuple[Samples, int]:
        """A tenth of a second of silence at 16 kHz."""
        return np.zeros(1600, dtype=np.int16), 16000


class EspeakSpeaker:
    """espeak-ng called directly (pyttsx3's espeak driver cannot reliably save files)."""

    def __init__(self, voices: dict[str, str] | None = None, speed: int = 165, pitch: int = 50,
                 binary: str | None = None) -> None:
        found = binary or shutil.which("espeak-ng")
        if found is None:
            raise SpeechError("espeak-ng is not installed (apt-get install espeak-ng)")
        self.binary = found
        self.voices = voices or {"en": "en-us", "zh": "cmn"}
        self.speed = speed
        self.pitch = pitch

    @classmethod
    def from_config(cls, cfg: VoiceConfig) -> EspeakSpeaker:
        """A speaker with the configured voices, speed and pitch."""
        return cls(dict(cfg.tts_voices), cfg.tts_speed, cfg.tts_pitch)

    def synthesize(self, text: str, lang: str, voice: str | None = None,
                   speed: int | None = None, pitch: int | None = None) -> tuple[Samples, int]:
        """Synthesize at 16 kHz mono (espeak-ng's 22.05 kHz, resampled)."""
        voice = voice or self.voices.get(lang, lang)
        cmd = [self.binary, "-v", voice, "-s", str(speed or self.speed),
               "-p", str(pitch if pitch is not None else self.pitch), "-b", "1", "--stdout"]
        try:
            proc = subprocess.run(cmd, input=text.encode("utf-8"), capture_output=True,
                                  timeout=ESPEAK_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise SpeechError(f"espeak-ng failed: {err}") from err
        if proc.returncode != 0 or not proc.stdout:
            detail = proc.stderr.decode(errors="replace").strip().splitlines()
            raise SpeechError(f"espeak-ng failed (voice {voice}): "
                              f"{detail[0] if detail else 'no audio'}")
        import io
        return decode_wav(io.BytesIO(_fix_stream_header(proc.stdout)), "espeak-ng"), 16000

    def version(self) -> str:
        """espeak-ng's version line."""
        try:
            out = subprocess.run([self.binary, "--version"], capture_output=True, timeout=5,
                                 check=False).stdout.decode(errors="replace")
        except (OSError, subprocess.TimeoutExpired):
            return "unknown"
        return out.strip().splitlines()[0] if out.strip() else "unknown"


def _fix_stream_header(data: bytes) -> bytes:
    """espeak-ng --stdout writes 0xFFFFFFFF sizes (it cannot seek); patch them from the length."""
    if len(data) < 44 or data[:4] != b"RIFF":
        return data
    out = bytearray(data)
    out[4:8] = (len(data) - 8).to_bytes(4, "little")
    idx = data.find(b"data", 12)
    if idx >= 0:
        out[idx + 4:idx + 8] = (len(data) - idx - 8).to_bytes(4, "little")
    return bytes(out)


# --- playback -------------------------------------------------------------------------------


class Sink(Protocol):
    """Where synthesized speech goes; ``play`` returns when done and is cancellable."""

    async def play(self, utt: Utterance, samples: Samples, rate: int) -> None:
        """Play (or write) one utterance."""


class WavDirSink:
    """Writes each utterance as ``NNNN-priority.wav``; optionally takes its real duration."""

    def __init__(self, directory: Path, realtime: bool = False) -> None:
        self.directory = directory
        self.realtime = realtime
        self.written: list[Path] = []
        self._count = itertools.count(1)

    async def play(self, utt: Utterance, samples: Samples, rate: int) -> None:
        """Write the file, then wait for as long as it would sound when realtime."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{next(self._count):04d}-{utt.priority.name.lower()}.wav"
        path.write_bytes(encode_wav(samples, rate))
        self.written.append(path)
        if self.realtime:
            await asyncio.sleep(len(samples) / rate)


class DeviceSink:
    """Plays on the default output device through sounddevice (optional)."""

    def __init__(self) -> None:
        try:
            import sounddevice  # type: ignore[import-untyped,unused-ignore]
            sounddevice.query_devices(kind="output")
        except (ImportError, OSError, ValueError) as err:
            raise SpeechError(f"no audio output: {err}") from err
        self._sd = sounddevice

    async def play(self, utt: Utterance, samples: Samples, rate: int) -> None:
        """Play and wait; cancelling stops the sound at once."""
        self._sd.play(samples, rate)
        try:
            await asyncio.sleep(len(samples) / rate)
        finally:
            self._sd.stop()


class NullSink:
    """Discards speech (no device, no reply directory)."""

    async def play(self, utt: Utterance, samples: Samples, rate: int) -> None:
        """Nothing."""


class SpeechOutput:
    """Runs a SpeechQueue's decisions: synthesis in an executor, one playback task at a time.

    ``on_start(utt)`` is called as an utterance starts to sound (after synthesis);
    ``on_end(utt, completed)`` when it finished (True), failed or was stopped (False). Both run
    on the loop after the queue has moved on, so ``queue.current`` is already what plays next.
    """

    def __init__(self, speaker: Speaker, sink: Sink,
                 on_start: Callable[[Utterance], None] | None = None,
                 on_end: Callable[[Utterance, bool], None] | None = None) -> None:
        self.queue = SpeechQueue()
        self.speaker = speaker
        self.sink = sink
        self.on_start = on_start
        self.on_end = on_end
        self.spoken: list[Utterance] = []
        self.interrupted: list[Utterance] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def speaking(self) -> bool:
        """Whether an utterance is being synthesized or played."""
        return self.queue.current is not None

    def say(self, text: str, priority: Priority = Priority.REPLY, lang: str = "en",
            tag: str = "") -> None:
        """Queue something to say."""
        self._apply(self.queue.say(text, priority, lang, tag))

    def withdraw(self, tags: Collection[str]) -> list[Utterance]:
        """Take queued utterances with these tags back before they are said."""
        return self.queue.withdraw(tags)

    def barge_in(self) -> None:
        """The driver started speaking: silence now."""
        self._apply(self.queue.driver_started())

    def hold_for_reply(self) -> None:
        """The driver stopped speaking; hold all but critical alerts until :meth:`resume`."""
        self._apply(self.queue.reply_pending())

    def resume(self) -> None:
        """The driver's turn is over: queued speech goes on."""
        self._apply(self.queue.driver_stopped())

    async def wait_idle(self) -> None:
        """Until nothing is playing or queued (or the driver holds it)."""
        while self._task is not None and not self._task.done():
            await asyncio.wait([self._task])

    def _apply(self, actions: list[SpeechAction]) -> None:
        ended: list[Utterance] = []
        for action in actions:
            if isinstance(action, Stop):
                if self._task is not None and not self._task.done():
                    self._task.cancel()
                self.interrupted.append(action.utterance)
                ended.append(action.utterance)
                log.debug("speech stopped: %r", action.utterance.text)
            else:
                self._task = asyncio.create_task(self._play(action.utterance), name="speech")
        for utt in ended:
            self._ended(utt, False)

    async def _play(self, utt: Utterance) -> None:
        loop = asyncio.get_running_loop()
        completed = False
        try:
            samples, rate = await loop.run_in_executor(
                None, self.speaker.synthesize, utt.text, utt.lang)
            if self.on_start is not None:
                self.on_start(utt)
            await self.sink.play(utt, samples, rate)
            self.spoken.append(utt)
            completed = True
        except asyncio.CancelledError:
            return
        except SpeechError as err:
            log.warning("cannot speak %r: %s", utt.text, err)
        self._apply(self.queue.finished(utt))
        self._ended(utt, completed)

    def _ended(self, utt: Utterance, completed: bool) -> None:
        if self.on_end is not None:
            self.on_end(utt, completed)

    async def close(self) -> None:
        """Stop speaking and forget the queue."""
        self.queue = SpeechQueue()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def silence(seconds: float, rate: int = 16000) -> Samples:
    """Digital silence (padding in tests and benchmarks)."""
    return np.zeros(int(seconds * rate), np.int16)
