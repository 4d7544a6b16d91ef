"""The daemon side of voice: push-to-talk in, dialog, speech out, commands onto the hub.

Push-to-talk arrives as the steering-wheel signal in ``SignalsUpdated`` ("Pressed"/"Released";
with a microphone the press starts a capture and the release ends it) or as a call to
:meth:`VoiceService.push_to_talk` with any audio source (the D-Bus and CLI path), or as typed
text via :meth:`VoiceService.handle_text`. Recognition and synthesis run in executors; the loop
only moves results. Confirmed actions become ``Command`` events (origin ``"voice"``);
``vehicle_status`` is answered from the latest signals seen on the hub.

What the cloud sends is spoken too: chat messages as they arrive (``[voice] incoming_messages``:
read aloud at chat priority, announced, or kept for "read my messages"), help requests from
nearby cars as an offer to answer "on my way" (alert priority; yes makes a ``help_respond``
command), answers to our own help requests, and booking updates. Each utterance that starts
playing is published as ``Spoken``; ``VoiceState`` follows idle, listening, thinking,
confirming and speaking.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import logging
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import Config
from ..errors import AudioError, SpeechError, VoiceError
from ..events import (
    AlertRaised,
    BookingUpdated,
    CloudState,
    Command,
    Event,
    HelpRequest,
    HelpResponse,
    IntentRecognized,
    MessageReceived,
    SignalsUpdated,
    SignalValue,
    SpeakRequest,
    Spoken,
    VoiceState,
)
from ..hub import Hub
from .audio import AudioSource, Endpointer, MicrophoneSource, Samples
from .dialog import (
    Action,
    Dialog,
    DialogState,
    EmitCommand,
    Listen,
    ReadMessages,
    ReportStatus,
    Say,
    StopSpeaking,
)
from .intents import ParsedIntent
from .pipeline import VoicePipeline
from .prompts import (
    READ_ALOUD_HANZI,
    READ_ALOUD_WORDS,
    booking_text,
    breath_length,
    render,
    say_distance,
)
from .status import describe
from .tts import (
    DeviceSink,
    EspeakSpeaker,
    NullSink,
    Priority,
    SilentSpeaker,
    Sink,
    Speaker,
    SpeechOutput,
    Utterance,
    WavDirSink,
)

log = logging.getLogger(__name__)

PUSH_TO_TALK = "Vehicle.Cabin.SteeringWheel.Switches.PushToTalk"
LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
EARTH_RADIUS_KM = 6371.0  # mean radius (IUGG); the cloud measures help distances the same way


class VoiceActivity(enum.Enum):
    """What voice is doing, as published in ``VoiceState``."""

    IDLE = "idle"
    LISTENING = "listening"    # recording, or waiting for the answer to a question
    THINKING = "thinking"      # recognizing what was said
    CONFIRMING = "confirming"  # waiting for yes or cancel
    SPEAKING = "speaking"


@dataclass(frozen=True)
class ChatMessage:
    """An unread message to read aloud."""

    sender: str
    group: str
    text: str
    timestamp: float
    ident: int = field(default=0, compare=False)


class Inbox:
    """Unread messages, oldest first; the sync subsystem adds, reading aloud consumes."""

    def __init__(self) -> None:
        self.unread: list[ChatMessage] = []
        self._next = 1

    def add(self, sender: str, group: str, text: str,
            timestamp: float | None = None) -> ChatMessage:
        """A message arrived."""
        msg = ChatMessage(sender, group, text, timestamp or time.time(), self._next)
        self._next += 1
        self.unread.append(msg)
        return msg

    def take(self, group: str | None, skip: Collection[int] = ()) -> list[ChatMessage]:
        """Remove and return unread messages (of one group, not those in ``skip``), oldest
        first (newest last)."""
        picked = [m for m in self.unread
                  if (group is None or m.group == group) and m.ident not in skip]
        taken = {m.ident for m in picked}
        self.unread = [m for m in self.unread if m.ident not in taken]
        return sorted(picked, key=lambda m: m.timestamp)

    def mark_read(self, ident: int) -> None:
        """A message was read aloud in full."""
        self.unread = [m for m in self.unread if m.ident != ident]


def great_circle_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Haversine distance between two WGS-84 positions on a sphere, in km."""
    f1, f2 = math.radians(lat1), math.radians(lat2)
    a = (math.sin((f2 - f1) / 2) ** 2
         + math.cos(f1) * math.cos(f2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _speaker(cfg: Config) -> Speaker:
    """espeak-ng, or silence (logged) where it is not installed: the daemon runs on without it."""
    try:
        return EspeakSpeaker.from_config(cfg.voice)
    except SpeechError as err:
        log.warning("voice: %s; spoken replies and alerts stay silent", err)
        return SilentSpeaker()


def default_sink(cfg: Config) -> Sink:
    """Reply WAVs in [voice] reply_dir, else the audio device, else nowhere (logged once)."""
    if cfg.voice.reply_dir is not None:
        return WavDirSink(cfg.voice.reply_dir)
    try:
        return DeviceSink()
    except VoiceError as err:
        log.info("voice: no audio output (%s); replies are not played", err)
        return NullSink()


class VoiceService:
    """Voice for the daemon: ``await start()``, ``await stop()``, and push-to-talk entry points."""

    def __init__(self, cfg: Config, hub: Hub, *, pipeline: VoicePipeline | None = None,
                 speaker: Speaker | None = None, sink: Sink | None = None,
                 microphone: AudioSource | None = None, use_microphone: bool = True) -> None:
        self.cfg = cfg
        self.hub = hub
        self.lang = cfg.voice.language
        self.pipeline = pipeline or VoicePipeline(cfg.voice)
        self._speaker = speaker
        self._sink = sink
        self.microphone = microphone
        self.use_microphone = use_microphone and microphone is None
        self.dialog = Dialog(self.lang, cfg.voice.silence_timeout_s)
        self.signals: dict[str, SignalValue] = {}
        self.faults: list[str] = []
        self.inbox = Inbox()
        self.output: SpeechOutput | None = None
        self.last_reply: list[str] = []
        self.device: str | None = None  # our own name in the cloud (from CloudState online)
        self.activity = VoiceActivity.IDLE
        self._published: tuple[VoiceActivity, str] | None = None
        self._capturing = False
        self._thinking = False
        self._read_outs: dict[str, int] = {}  # utterance tag -> Inbox ident being read aloud
        self._tasks: list[asyncio.Task[Any]] = []
        self._capture: asyncio.Task[Any] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._turn = asyncio.Lock()

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load the recognizer (in an executor), open speech output, follow the hub."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, lambda: self.pipeline.recognizer)
        speaker = self._speaker or _speaker(self.cfg)
        self.output = SpeechOutput(speaker, self._sink or default_sink(self.cfg),
                                   on_start=self._speech_started, on_end=self._speech_ended)
        if self.use_microphone:
            try:
                self.microphone = MicrophoneSource(self.cfg.voice.input_device)
            except AudioError as err:
                log.info("voice: %s; push-to-talk takes WAV/PCM via push_to_talk()", err)
        sub = self.hub.subscribe(SignalsUpdated, SpeakRequest, AlertRaised, MessageReceived,
                                 Command, CloudState, HelpRequest, HelpResponse, BookingUpdated,
                                 name="voice")
        self._tasks.append(asyncio.create_task(self._follow(sub), name="voice-hub"))
        self._update_state(force=True)

    async def stop(self) -> None:
        """Stop listening and speaking."""
        if self._timer is not None:
            self._timer.cancel()
        if self.microphone is not None:
            self.microphone.stop()
        for task in [*self._tasks, *([self._capture] if self._capture else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, *([self._capture] if self._capture else []),
                             return_exceptions=True)
        self._tasks.clear()
        self._capture = None
        if self.output is not None:
            await self.output.close()

    async def __aenter__(self) -> VoiceService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- entry points --------------------------------------------------------------------------

    async def push_to_talk(self, source: AudioSource) -> list[str]:
        """One push-to-talk turn with an audio source; returns the replies it queued.

        Speech is held while the driver speaks; after that only critical alerts may speak
        until the reply is queued, so the reply comes before chat and other waiting speech.
        """
        self._press()
        self._capturing = True
        self._update_state()
        loop = asyncio.get_running_loop()
        endpointer = Endpointer(self.cfg.voice.silence_timeout_s, self.cfg.voice.end_of_speech_s,
                                self.cfg.voice.max_utterance_s)
        try:
            samples = await loop.run_in_executor(None, source.capture, endpointer)
        except AudioError:
            self._capturing = False
            self._release()
            self._run(self.dialog.silence(self._now()))  # the turn still ends (or reprompts)
            raise
        self._capturing = False
        self._hold_for_reply()
        try:
            return await self._process_audio(samples)
        finally:
            self._release()

    async def handle_text(self, text: str) -> list[str]:
        """One turn with typed text (demo, CLI, D-Bus)."""
        self._press()
        self._hold_for_reply()
        try:
            parsed = await self._understand(self.pipeline.parse_text, text)
            return self._process(parsed)
        finally:
            self._release()

    def set_groups(self, groups: Sequence[str]) -> None:
        """Group names changed (configuration reload, cloud); the grammar follows."""
        self.pipeline.set_groups(groups)

    def set_faults(self, faults: Sequence[str]) -> None:
        """Active warnings to mention when asked about faults (fed by the alerts subsystem)."""
        self.faults = list(faults)

    async def wait_quiet(self) -> None:
        """Until speech output has nothing left to say (tests, demo)."""
        if self.output is not None:
            await self.output.wait_idle()

    # --- internals: turns ----------------------------------------------------------------------

    def _press(self) -> None:
        self._run(self.dialog.push_to_talk(self._now()))
        if self.output is not None:
            self.output.barge_in()

    def _hold_for_reply(self) -> None:
        if self.output is not None and not self._capturing:  # a capture holds all speech
            self.output.hold_for_reply()

    def _release(self) -> None:
        if self.output is not None and not self._capturing:
            self.output.resume()
        self._update_state()

    async def _understand(self, fn: Callable[[Any], ParsedIntent], arg: Any) -> ParsedIntent:
        """Recognize or parse in an executor, one turn at a time, "thinking" meanwhile."""
        loop = asyncio.get_running_loop()
        self._thinking = True
        self._update_state()
        try:
            async with self._turn:
                return await loop.run_in_executor(None, fn, arg)
        finally:
            self._thinking = False

    async def _process_audio(self, samples: Samples) -> list[str]:
        parsed = await self._understand(self.pipeline.recognize, samples)
        if not parsed.text and parsed.intent is None and (
                self.pipeline.last_transcript is None
                or self.pipeline.last_transcript.backend == "vad"):
            return self._run(self.dialog.silence(self._now()))
        return self._process(parsed)

    def _process(self, parsed: ParsedIntent) -> list[str]:
        self.hub.publish(IntentRecognized(parsed.text, parsed.intent, dict(parsed.slots),
                                          self.lang))
        return self._run(self.dialog.heard(parsed, self._now()))

    def _run(self, actions: list[Action]) -> list[str]:
        """Carry out the dialog's actions; returns the texts queued for speech."""
        said: list[str] = []
        for action in actions:
            if isinstance(action, Say):
                said.append(action.text)
                self._say(action.text, Priority.parse(action.priority))
            elif isinstance(action, StopSpeaking):
                if self.output is not None:
                    self.output.barge_in()
            elif isinstance(action, EmitCommand):
                self.hub.publish(Command(action.name, dict(action.args), "voice"))
            elif isinstance(action, ReportStatus):
                text = describe(action.item, self.signals, self.faults, self.lang)
                said.append(text)
                self._say(text, Priority.REPLY)
            elif isinstance(action, ReadMessages):
                said.extend(self._read_messages(action.group))
            elif isinstance(action, Listen):
                self._listen_for_answer()
        self._schedule_tick()
        self._update_state()
        if said:
            self.last_reply = said
        return said

    def _read_messages(self, group: str | None) -> list[str]:
        playing = self.output.queue.current if self.output is not None else None
        reading_now = self._read_outs.get(playing.tag) if playing is not None else None
        messages = self.inbox.take(group, () if reading_now is None else (reading_now,))
        taken = {m.ident for m in messages}
        queued = [tag for tag, ident in self._read_outs.items() if ident in taken]
        if queued and self.output is not None:
            self.output.withdraw(queued)  # read now, in order, rather than twice
        for tag in queued:
            del self._read_outs[tag]
        if not messages and reading_now is not None:
            return []  # the one being read aloud right now is the answer
        if not messages:
            text = render("no_messages", self.lang)
            self._say(text, Priority.REPLY)
            return [text]
        texts = [render("message", self.lang, {"sender": m.sender, "group": m.group,
                                               "text": m.text}) for m in messages]
        for text in texts:
            self._say(text, Priority.CHAT)
        return texts

    def _say(self, text: str, priority: Priority, tag: str = "") -> None:
        if self.output is not None:
            self.output.say(text, priority, self.lang, tag)

    def _listen_for_answer(self) -> None:
        """After a question, open the microphone for the answer when there is one."""
        if self.microphone is None or (self._capture is not None and not self._capture.done()):
            return
        self._capture = asyncio.create_task(self._capture_turn(), name="voice-capture")

    async def _capture_turn(self) -> None:
        if self.output is not None:
            await self.output.wait_idle()  # do not record our own question
        assert self.microphone is not None
        try:
            await self.push_to_talk(self.microphone)
        except AudioError as err:
            log.warning("voice: microphone: %s", err)

    def _schedule_tick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.dialog.deadline
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(deadline, self._on_deadline)

    def _on_deadline(self) -> None:
        self._timer = None
        if self._capture is not None and not self._capture.done():
            return  # the capture's own end-of-speech timeout covers this turn
        if self.output is not None and self.output.speaking:
            return  # the silence counts from the end of speech (_speech_ended reschedules)
        self._run(self.dialog.tick(self._now()))

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # --- internals: state and speech call-backs --------------------------------------------

    def _current_activity(self) -> VoiceActivity:
        if self._capturing:
            return VoiceActivity.LISTENING
        if self._thinking:
            return VoiceActivity.THINKING
        if self.output is not None and self.output.speaking:
            return VoiceActivity.SPEAKING
        if self.dialog.state is DialogState.CONFIRMING:
            return VoiceActivity.CONFIRMING
        if self.dialog.state is not DialogState.IDLE:
            return VoiceActivity.LISTENING
        return VoiceActivity.IDLE

    def _update_state(self, force: bool = False) -> None:
        """The one place voice changes state: logged, and published as VoiceState on change."""
        activity, detail = self._current_activity(), self.dialog.intent or ""
        if not force and (activity, detail) == self._published:
            return
        if activity is not self.activity:
            log.debug("voice %s -> %s (%s)", self.activity.value, activity.value, detail)
        self.activity, self._published = activity, (activity, detail)
        if not self.hub.closed:
            self.hub.publish(VoiceState(activity.value, detail))

    def _speech_started(self, utt: Utterance) -> None:
        if not self.hub.closed:
            self.hub.publish(Spoken(utt.text, utt.priority.name.lower(), utt.lang))
        self._update_state()

    def _speech_ended(self, utt: Utterance, completed: bool) -> None:
        ident = self._read_outs.get(utt.tag) if utt.tag else None
        if ident is not None:
            assert self.output is not None
            if completed:
                self.inbox.mark_read(ident)
                del self._read_outs[utt.tag]
            elif utt != self.output.queue.current and utt not in self.output.queue.pending():
                del self._read_outs[utt.tag]  # cut short for good: it stays unread
        if self.output is not None and not self.output.speaking:
            self.dialog.spoke(self._now())
            self._schedule_tick()
        self._update_state()

    # --- internals: hub events -----------------------------------------------------------------

    async def _follow(self, sub: Any) -> None:
        async for event in sub:
            self._on_event(event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, SpeakRequest):
            self._say(event.text, Priority.parse(event.priority))
        elif isinstance(event, AlertRaised):
            if event.announce:
                critical = event.severity == "critical"
                self._say(event.spoken, Priority.CRITICAL if critical else Priority.ALERT)
        elif isinstance(event, MessageReceived):
            self._on_message(event)
        elif isinstance(event, HelpRequest):
            self._on_help_request(event)
        elif isinstance(event, HelpResponse):
            if event.responder != self.device:
                self._say(render("help_response", self.lang, {"sender": event.responder,
                                                              "text": event.text}),
                          Priority.REPLY)
        elif isinstance(event, BookingUpdated):
            slots = {"service": event.service, "day": event.day, "time": event.time,
                     "shop": event.shop, "reason": event.reason}
            self._say(booking_text(event.status, slots, self.lang, dt.date.today()),
                      Priority.REPLY)
        elif isinstance(event, CloudState):
            if event.state == "online" and event.detail:
                self.device = event.detail  # the welcome names this car as others see it
        elif isinstance(event, Command) and event.origin != "voice":
            self._on_command(event)
        elif isinstance(event, SignalsUpdated):
            self.signals.update(event.values)
            ptt = event.values.get(PUSH_TO_TALK)
            if ptt is not None:
                self._on_push_to_talk(str(ptt.value))
        self._update_state()

    def _on_message(self, event: MessageReceived) -> None:
        """Chat: read aloud (marked read once said in full), announced, or only kept."""
        if self.device is not None and event.sender == self.device:
            log.debug("voice: not reading our own message back (seq %d)", event.seq)
            return
        msg = self.inbox.add(event.sender, event.group, event.text)
        mode = self.cfg.voice.incoming_messages
        if mode == "off" or self.output is None:
            return
        slots = {"sender": msg.sender, "group": msg.group, "text": msg.text}
        text = render("message", self.lang, slots)
        limit = READ_ALOUD_HANZI if self.lang == "zh" else READ_ALOUD_WORDS
        if mode == "read" and breath_length(text, self.lang) <= limit:
            tag = f"chat-{msg.ident}"
            self._read_outs[tag] = msg.ident
            self._say(text, Priority.CHAT, tag)
        else:
            self._say(render("message_announce", self.lang, slots), Priority.CHAT)

    def _on_help_request(self, event: HelpRequest) -> None:
        """A nearby car needs help: offer to answer "on my way" (yes, cancel or silence)."""
        if self.device is not None and event.sender == self.device:
            return
        slots = {"sender": event.sender}
        km = self._help_distance(event)
        if km is None:
            intro = render("help_request_nearby", self.lang, slots)
        else:
            intro = render("help_request", self.lang, slots,
                           said={"distance": say_distance(km, self.lang)})
        answer = EmitCommand("help_respond", {"request_id": event.request_id,
                                              "text": render("help_offer_text", self.lang)})
        self._run(self.dialog.offer(answer, render("help_offer", self.lang), self._now(),
                                    intro=(intro,),
                                    done=render("done_help_respond", self.lang, slots)))

    def _help_distance(self, event: HelpRequest) -> float | None:
        """The event's distance, else ours from the latest position signals, else None."""
        if math.isfinite(event.distance_km) and event.distance_km >= 0:
            return event.distance_km
        lat, lon = self.signals.get(LATITUDE), self.signals.get(LONGITUDE)
        if lat is None or lon is None or isinstance(lat.value, str) \
                or isinstance(lon.value, str):
            return None
        if not all(math.isfinite(v) for v in (event.latitude, event.longitude,
                                              lat.value, lon.value)):
            return None
        return great_circle_km(float(lat.value), float(lon.value), event.latitude,
                               event.longitude)

    def _on_command(self, command: Command) -> None:
        """The D-Bus/CLI path into the same dialog: typed text, spoken text, push-to-talk."""
        if command.name == "submit_text" and command.args.get("text"):
            self._tasks.append(asyncio.create_task(self.handle_text(command.args["text"]),
                                                   name="voice-text"))
        elif command.name == "say" and command.args.get("text"):
            self._say(command.args["text"], Priority.REPLY)
        elif command.name == "push_to_talk":
            self._on_push_to_talk("Pressed")

    def _on_push_to_talk(self, value: str) -> None:
        if value == "Pressed":
            if self.microphone is None:
                if self.output is not None:  # barge-in still works without a microphone
                    self.output.barge_in()
                    self.output.resume()
                log.info("voice: push-to-talk pressed, but there is no microphone")
            elif self._capture is None or self._capture.done():
                self._capture = asyncio.create_task(self.push_to_talk(self.microphone),
                                                    name="voice-ptt")
        elif value == "Released" and self.microphone is not None:
            self.microphone.stop()


def doctor_report(cfg: Config) -> dict[str, str]:
    """Which recognizer backend and model, speech output and microphone voice would use."""
    from .asr import vosk_available
    from .audio import MicrophoneSource

    report: dict[str, str] = {"voice.language": cfg.voice.language}
    pipeline = VoicePipeline(cfg.voice)
    try:
        backend, model_dir = pipeline.backend()
        report["voice.backend"] = backend
        if backend == "pocketsphinx":
            import pocketsphinx  # type: ignore[import-untyped]
            report["voice.model"] = (f"pocketsphinx {_version('pocketsphinx')} bundled en-us "
                                     f"({pocketsphinx.get_model_path('en-us')})")
        else:
            report["voice.model"] = f"vosk {_version('vosk')} model {model_dir}"
    except VoiceError as err:
        report["voice.backend"] = f"unavailable: {err}"
    report["voice.vosk"] = "installed" if vosk_available() else "not installed"
    report["voice.groups"] = ", ".join(pipeline.parser.groups)
    try:
        report["voice.tts"] = EspeakSpeaker.from_config(cfg.voice).version()
    except VoiceError as err:
        report["voice.tts"] = f"unavailable: {err}"
    try:
        MicrophoneSource(cfg.voice.input_device)
        report["voice.microphone"] = "available"
    except AudioError as err:
        report["voice.microphone"] = f"none ({err}); push-to-talk takes WAV/PCM"
    report["voice.replies"] = str(cfg.voice.reply_dir) if cfg.voice.reply_dir else "audio device"
    return report


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"
