"""Audio or text to a :class:`ParsedIntent`: the parser and recognizer for one language, together.

Blocking (the recognizer is): the daemon calls :meth:`VoicePipeline.recognize` in an executor.
The recognizer's grammar is rebuilt whenever the parser's live lists change. Audio is trimmed to
its speech first (:func:`vad.prepare`: DC out, WebRTC VAD span, a short margin, a fixed level),
so silence, level, rate and channel count around the words do not change the answer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from .settings import VoiceConfig
from .asr import Recognizer, Transcript, choose_backend, make_recognizer
from . import vad
from .audio import Samples, has_speech
from .intents import DEFAULT_GROUPS, IntentParser, ParsedIntent

log = logging.getLogger(__name__)

# with no question asked (context None) the dialog takes an "answer" as "not understood" ("yes"
# may still confirm an offer the car made on its own, so "confirm" stays)
NOT_A_COMMAND = frozenset({"answer"})


def groups_for(cfg: VoiceConfig, lang: str) -> tuple[str, ...]:
    """Configured groups for a language, falling back to the built-in demo groups."""
    return tuple(cfg.groups.get(lang) or DEFAULT_GROUPS.get(lang, ()))


class VoicePipeline:
    """Recognizer + intent parser for one language, the recognizer made on first use."""

    def __init__(self, cfg: VoiceConfig, lang: str | None = None,
                 sentences: Path | None = None, recognizer: Recognizer | None = None,
                 trim: bool = True) -> None:
        self.cfg = cfg
        self.lang = lang or cfg.language
        self.parser = IntentParser(self.lang, groups_for(cfg, self.lang), sentences)
        self._recognizer = recognizer
        self._grammar_revision = -1 if recognizer is None else self.parser.revision
        self._lock = threading.Lock()
        self.last_transcript: Transcript | None = None
        self.trim = trim

    @property
    def recognizer(self) -> Recognizer:
        """The recognizer, created (and its grammar built) on first use."""
        with self._lock:
            if self._recognizer is None:
                self._recognizer = make_recognizer(self.cfg, self.parser)
                self._grammar_revision = self.parser.revision
            elif self._grammar_revision != self.parser.revision:
                self._recognizer.update_grammar(self.parser)
                self._grammar_revision = self.parser.revision
            return self._recognizer

    def backend(self) -> tuple[str, Path | None]:
        """Which backend and vosk model the configuration selects (without loading it)."""
        return choose_backend(self.cfg, self.lang)

    def set_groups(self, groups: Sequence[str]) -> None:
        """New group names (e.g. from the cloud); the grammar follows on next use."""
        self.parser.set_groups(groups)

    def set_shops(self, shops: Sequence[str]) -> None:
        """The shops just offered for a booking, so "Demo Garage" picks one."""
        self.parser.set_shops(shops)

    def parse_text(self, text: str) -> ParsedIntent:
        """Typed text to an intent."""
        return self.parser.parse(text)

    def recognize(self, samples: Samples, context: str | None = None) -> ParsedIntent:
        """One utterance of 16 kHz mono samples to an intent (blocking); ``context`` is the
        question it answers (the slot asked for, or "confirm"), None for a new command."""
        speech = vad.prepare(samples) if self.trim else (samples if has_speech(samples) else None)
        if speech is None:
            self.last_transcript = Transcript("", "vad", rejected=True)
            return ParsedIntent("", None)
        transcript = self.recognizer.recognize(speech.tobytes(), context)
        self.last_transcript = transcript
        if transcript.rejected or not transcript.text:
            return ParsedIntent(transcript.text, None)
        parsed = self.parser.parse(transcript.text)
        if context is None and parsed.intent in NOT_A_COMMAND:
            return ParsedIntent(parsed.text, None)
        return parsed
