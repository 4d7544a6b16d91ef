"""The daemon side of voice: push-to-talk in, dialog, speech out, commands onto the hub.

Push-to-talk arrives as the steering-wheel signal in ``SignalsUpdated`` ("Pressed"/"Released";
with a microphone the press starts a capture and the release ends it) or as a call to
:meth:`VoiceService.push_to_talk` with any audio source (the D-Bus and CLI path), or as typed
text via :meth:`VoiceService.handle_text`. Recognition and synthesis run in executors; the loop
only moves results. Confirmed actions become ``Command`` events (origin ``"voice"``);
``vehicle_status`` is answered from the latest signals seen on the hub.

What the cloud sends is spoken too (chat read-outs, help offers, help answers, booking
updates): :mod:`carlinkd.voice.social` handles those events and the chat inbox; this service
stays the orchestrator of audio capture, the dialog and the speech queue. Each utterance that
starts playing is published as ``Spoken``; ``VoiceState`` follows idle, listening, thinking,
confirming and speaking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..aio import cancel_all
from ..config import Config
from ..errors import AudioError, SpeechError, VoiceError
from ..events import (
    AlertCleared,
    AlertRaised,
    Command,
    Event,
    GroupsListed,
    IntentRecognized,
    SignalsUpdated,
    SignalValue,
    SpeakRequest,
    Spoken,
    VoiceActivity,
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
    Lookup,
    ReadMessages,
    ReportStatus,
    Say,
    StopSpeaking,
)
from .intents import ParsedIntent
from .pipeline import VoicePipeline
from .social import SOCIAL_EVENTS, Inbox, Social
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
        self._active_alerts: dict[str, str] = {}  # key -> text, for "are there any faults"
        self.social = Social(cfg.voice, self.dialog, self.signals)
        self.social.on_shops = self.pipeline.set_shops
        self._social_timer: asyncio.TimerHandle | None = None
        self.output: SpeechOutput | None = None
        self.last_reply: list[str] = []
        self.activity = VoiceActivity.IDLE
        self._detail: str | None = None  # published with the activity; None before start
        self._capturing = False
        self._thinking = False
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
        self.social.attach(self.output)
        if self.use_microphone:
            try:
                self.microphone = MicrophoneSource(self.cfg.voice.input_device)
            except AudioError as err:
                log.info("voice: %s; push-to-talk takes WAV/PCM via push_to_talk()", err)
        sub = self.hub.subscribe(SignalsUpdated, SpeakRequest, AlertRaised, AlertCleared, Command,
                                 *SOCIAL_EVENTS, name="voice")
        self._tasks.append(asyncio.create_task(self._follow(sub), name="voice-hub"))
        self._update_state()

    async def stop(self) -> None:
        """Stop listening and speaking."""
        for timer in (self._timer, self._social_timer):
            if timer is not None:
                timer.cancel()
        if self.microphone is not None:
            self.microphone.stop()
        await cancel_all([*self._tasks, *([self._capture] if self._capture else [])])
        self._tasks.clear()
        self._capture = None
        if self.output is not None:
            await self.output.close()

    async def __aenter__(self) -> VoiceService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def inbox(self) -> Inbox:
        """Unread chat messages (kept by :class:`carlinkd.voice.social.Social`)."""
        return self.social.inbox

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
        context = self.dialog.expecting()
        parsed = await self._understand(
            lambda pcm: self.pipeline.recognize(pcm, context), samples)
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
                said.extend(self.social.read_messages(action.group))
            elif isinstance(action, Lookup):
                said.extend(self._lookup(action.name))
            elif isinstance(action, Listen):
                self._listen_for_answer()
        self._schedule_tick()
        self._update_state()
        if said:
            self.last_reply = said
        return said

    def _say(self, text: str, priority: Priority, tag: str = "") -> None:
        if self.output is not None:
            self.output.say(text, priority, self.lang, tag)

    def _lookup(self, name: str) -> list[str]:
        """A Lookup action: answered from what the car knows (and refreshed from the cloud)."""
        if name == "list_groups":
            self.hub.publish(Command("list_groups", {}, "voice"))
            return [self.social.describe_groups()]
        return self._run(self.social.offer_booking_cancel(self._now()))

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

    def _update_state(self) -> None:
        """The one place voice changes state: logged, and published as VoiceState on change."""
        activity, detail = self._current_activity(), self.dialog.intent or ""
        if (activity, detail) == (self.activity, self._detail):
            return
        if activity is not self.activity:
            log.debug("voice %s -> %s (%s)", self.activity.value, activity.value, detail)
        self.activity, self._detail = activity, detail
        if not self.hub.closed:
            self.hub.publish(VoiceState(activity.value, detail))

    def _speech_started(self, utt: Utterance) -> None:
        if not self.hub.closed:
            self.hub.publish(Spoken(utt.text, utt.priority.name.lower(), utt.lang))
        self._update_state()

    def _speech_ended(self, utt: Utterance, completed: bool) -> None:
        self.social.speech_ended(utt, completed)
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
        elif isinstance(event, AlertCleared):
            if self._active_alerts.pop(event.key, None) is not None:
                self.set_faults(list(self._active_alerts.values()))
        elif isinstance(event, AlertRaised):
            self._active_alerts[event.key] = event.text.rstrip(".。")
            self.set_faults(list(self._active_alerts.values()))
            if event.announce:
                critical = event.severity == "critical"
                self._say(event.spoken, Priority.CRITICAL if critical else Priority.ALERT)
        elif isinstance(event, SOCIAL_EVENTS):
            self._run(self.social.handle(event, self._now()))
            if isinstance(event, GroupsListed):
                self._cloud_groups(event)
            self._schedule_social()
        elif isinstance(event, Command) and event.origin != "voice":
            self._on_command(event)
        elif isinstance(event, SignalsUpdated):
            self.signals.update(event.values)
            ptt = event.values.get(PUSH_TO_TALK)
            if ptt is not None:
                self._on_push_to_talk(str(ptt.value))
        self._update_state()

    def _cloud_groups(self, event: GroupsListed) -> None:
        """The cloud's groups feed the grammar: joined, may join, invited and pending ones."""
        names = [*event.joined, *event.available, *event.invited, *event.pending]
        if names:
            self.set_groups(names)

    def _schedule_social(self) -> None:
        """Wake Social when a summary of held chat messages is due."""
        due = self.social.due(self._now())
        if self._social_timer is not None:
            self._social_timer.cancel()
            self._social_timer = None
        if due is not None:
            self._social_timer = asyncio.get_running_loop().call_at(due, self._social_tick)

    def _social_tick(self) -> None:
        self._social_timer = None
        self.social.tick(self._now())
        self._schedule_social()

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
    from .whisper import whisper_line
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
        elif backend == "whisper":
            report["voice.model"] = whisper_line(cfg.voice, cfg.voice.language)
        else:
            report["voice.model"] = f"vosk {_version('vosk')} model {model_dir}"
    except VoiceError as err:
        report["voice.backend"] = f"unavailable: {err}"
    report["voice.vosk"] = "installed" if vosk_available() else "not installed"
    report["voice.whisper"] = whisper_line(cfg.voice, cfg.voice.language)
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
