"""Offline speech recognition: two backends behind one interface, both grammar-restricted.

- :class:`PocketsphinxRecognizer`: the US-English acoustic model and CMU dictionary shipped in
  the pocketsphinx wheel, searching a JSGF grammar generated from the intents. A grammar search
  always finds *some* sentence, so each result is verified against a free phone loop over the
  same audio: when unconstrained phones explain the audio better than the grammar's best path
  (by ``reject_margin`` per frame), the speech was not in the grammar and is rejected.
- :class:`VoskRecognizer`: any vosk model directory, in grammar mode with phrases generated from
  the same intents (vosk-model-small-en-us / -cn are the expected ones).

Both take 16 kHz mono 16-bit PCM and are blocking: the daemon calls them in an executor.
A recognizer is not thread-safe; one utterance at a time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..config import VoiceConfig
from ..errors import RecognizerUnavailable
from .audio import SAMPLE_RATE
from .grammar import GrammarBuilder, cjk_tokens, english_tokens, to_jsgf, to_phrases
from .intents import IntentParser

log = logging.getLogger(__name__)

# dither: a little noise keeps log energies finite on digitally silent frames (synthetic or
# gated audio), which otherwise derail the search; seeded so results are reproducible.
DECODER_OPTIONS: dict[str, Any] = {"lm": None, "loglevel": "FATAL", "samprate": SAMPLE_RATE,
                                   "dither": True, "seed": 1}
# Grammar score minus phone-loop score, per 10 ms frame, below which a result is rejected
# (pocketsphinx's scaled score units; measured on tests/fixtures/voice, see the issue note).
REJECT_MARGIN = 0.0
GRAMMAR_SEARCH, PHONE_SEARCH = "carlinkd", "phones"
# Silence added around each utterance: the grammar's final state needs a little room after the
# last word (tightly cut audio otherwise ends the search mid-word, yielding a partial result).
PAD_S = 0.0

# Above this many phrases vosk compiles its grammar FST slowly; pieces keep it small.
VOSK_MAX_PHRASES_PER_SENTENCE = 200


@dataclass(frozen=True)
class Transcript:
    """What a recognizer heard: words (empty when nothing in the grammar was heard)."""

    text: str
    backend: str
    rejected: bool = False


class Recognizer(Protocol):
    """One backend: grammar from an intent parser, PCM in, transcript out."""

    name: str
    model: str

    def update_grammar(self, parser: IntentParser) -> None:
        """(Re)build the recognition grammar from the parser's templates and live lists."""

    def recognize(self, pcm: bytes) -> Transcript:
        """Recognize one utterance of 16 kHz mono int16 PCM."""


class PocketsphinxRecognizer:
    """pocketsphinx with its bundled US-English model and a generated JSGF grammar."""

    name = "pocketsphinx"

    def __init__(self, reject_margin: float | None = REJECT_MARGIN, **options: Any) -> None:
        try:
            import pocketsphinx  # type: ignore[import-untyped]
        except ImportError as err:
            raise RecognizerUnavailable("pocketsphinx is not installed "
                                        "(pip install pocketsphinx)") from err
        self._ps = pocketsphinx
        try:
            self.decoder = pocketsphinx.Decoder(**{**DECODER_OPTIONS, **options})
        except (RuntimeError, ValueError) as err:
            raise RecognizerUnavailable(f"pocketsphinx cannot load its model: {err}") from err
        self.model = str(self.decoder.config["hmm"])
        self.reject_margin = reject_margin
        if reject_margin is not None:
            self.decoder.add_allphone_file(
                PHONE_SEARCH, pocketsphinx.get_model_path("en-us/en-us-phone.lm.bin"))
        self.revision = -1
        self.jsgf = ""
        self.last_margin: float | None = None
        self._lock = threading.Lock()

    def known(self, word: str) -> bool:
        """Whether the pronunciation dictionary has the word."""
        return self.decoder.lookup_word(word) is not None

    def update_grammar(self, parser: IntentParser) -> None:
        """Generate JSGF from the parser and make it the active search."""
        if parser.lang != "en":
            raise RecognizerUnavailable(f"pocketsphinx has no model for {parser.lang!r}; "
                                        "configure [voice] vosk_models")
        builder = GrammarBuilder(parser, english_tokens(self.known))
        jsgf = to_jsgf(builder.build())
        with self._lock:
            try:
                self.decoder.add_jsgf_string(GRAMMAR_SEARCH, jsgf)
            except (RuntimeError, ValueError) as err:
                raise RecognizerUnavailable(f"pocketsphinx rejected the grammar: {err}") from err
        self.jsgf = jsgf
        self.revision = parser.revision

    def recognize(self, pcm: bytes) -> Transcript:
        """Decode one whole utterance against the grammar, then verify it (see module doc)."""
        pad = bytes(2 * int(PAD_S * SAMPLE_RATE))
        pcm = pad + pcm + pad
        frames = max(len(pcm) // 2 // 160, 1)
        with self._lock:
            hyp = self._decode(GRAMMAR_SEARCH, pcm)
            if hyp is None or not hyp.hypstr.strip():
                return Transcript("", self.name, rejected=True)
            if self.reject_margin is not None:
                phones = self._decode(PHONE_SEARCH, pcm)
                if phones is not None:
                    self.last_margin = (hyp.score - phones.score) / frames
                    if self.last_margin < self.reject_margin:
                        log.debug("rejected %r (margin %.6f)", hyp.hypstr, self.last_margin)
                        return Transcript("", self.name, rejected=True)
        return Transcript(hyp.hypstr.strip(), self.name)

    def _decode(self, search: str, pcm: bytes) -> Any:
        self.decoder.activate_search(search)
        self.decoder.start_utt()
        self.decoder.process_raw(pcm, full_utt=True)
        self.decoder.end_utt()
        return self.decoder.hyp()


class VoskModelCache:
    """Loads each vosk model directory once per process (they take seconds and 100s of MB)."""

    def __init__(self) -> None:
        self._models: dict[Path, Any] = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> Any:
        """The loaded vosk Model for a directory."""
        with self._lock:
            model = self._models.get(path)
            if model is None:
                model = self._models[path] = _load_vosk(path)
            return model


def _load_vosk(path: Path) -> Any:
    try:
        import vosk  # type: ignore[import-untyped]
    except ImportError as err:
        raise RecognizerUnavailable("vosk is not installed (pip install vosk)") from err
    if not (path / "am").is_dir() and not (path / "final.mdl").exists():
        raise RecognizerUnavailable(f"{path}: not a vosk model directory")
    vosk.SetLogLevel(-1)
    try:
        return vosk.Model(str(path))
    except Exception as err:  # vosk raises a bare Exception on a bad model
        raise RecognizerUnavailable(f"{path}: vosk cannot load the model: {err}") from err


VOSK_MODELS = VoskModelCache()


class VoskRecognizer:
    """vosk with a model directory, in grammar mode with phrases built from the intents."""

    name = "vosk"

    def __init__(self, model_dir: Path, cache: VoskModelCache = VOSK_MODELS) -> None:
        self.model = str(model_dir)
        self._model = cache.get(model_dir)
        import vosk
        self._vosk = vosk
        self.phrases: list[str] = []
        self.revision = -1
        self._recognizer: Any = None
        self._lock = threading.Lock()
        self.cjk = False

    def known(self, word: str) -> bool:
        """Whether the model's vocabulary has the word."""
        return bool(self._model.vosk_model_find_word(word) >= 0)

    def update_grammar(self, parser: IntentParser) -> None:
        """Generate the phrase list and create a recognizer restricted to it."""
        self.cjk = bool(parser.intents.settings.ignore_whitespace)
        tokens: Callable[[str], list[str] | None]
        tokens = cjk_tokens(self.known) if self.cjk else english_tokens(self.known)
        builder = GrammarBuilder(parser, tokens)
        rules = builder.build()
        phrases = to_phrases(rules, builder.list_rules, VOSK_MAX_PHRASES_PER_SENTENCE)
        grammar = json.dumps(phrases + ["[unk]"], ensure_ascii=False)
        with self._lock:
            try:
                self._recognizer = self._vosk.KaldiRecognizer(self._model, SAMPLE_RATE, grammar)
            except Exception as err:  # vosk raises a bare Exception
                raise RecognizerUnavailable(f"vosk rejected the grammar: {err}") from err
        self.phrases = phrases
        self.revision = parser.revision

    def recognize(self, pcm: bytes) -> Transcript:
        """Decode one utterance; ``[unk]`` (speech outside the grammar) means rejected."""
        if self._recognizer is None:
            raise RecognizerUnavailable("vosk recognizer has no grammar yet")
        with self._lock:
            self._recognizer.AcceptWaveform(pcm)
            result = json.loads(self._recognizer.FinalResult())
            self._recognizer.Reset()
        words = str(result.get("text", "")).split()
        if "[unk]" in words:
            return Transcript("", self.name, rejected=True)
        joiner = "" if self.cjk else " "
        return Transcript(joiner.join(words), self.name)


def vosk_available() -> bool:
    """Whether the vosk package can be imported."""
    try:
        import vosk  # noqa: F401
    except ImportError:
        return False
    return True


def choose_backend(cfg: VoiceConfig, lang: str) -> tuple[str, Path | None]:
    """Which backend (and vosk model dir) the configuration selects for a language."""
    model_dir = cfg.vosk_models.get(lang)
    if cfg.backend == "vosk" or (cfg.backend == "auto" and model_dir is not None
                                 and model_dir.is_dir() and vosk_available()):
        if model_dir is None:
            raise RecognizerUnavailable(f"backend is vosk but [voice] vosk_models has no "
                                        f"{lang!r} model directory")
        return "vosk", model_dir
    if lang != "en":
        raise RecognizerUnavailable(f"no recognizer for {lang!r}: pocketsphinx has only "
                                    f"US English; set [voice] vosk_models.{lang}")
    return "pocketsphinx", None


def make_recognizer(cfg: VoiceConfig, parser: IntentParser) -> Recognizer:
    """A recognizer for the parser's language with its grammar built."""
    backend, model_dir = choose_backend(cfg, parser.lang)
    rec: Recognizer
    if backend == "vosk":
        assert model_dir is not None
        rec = VoskRecognizer(model_dir)
    else:
        rec = PocketsphinxRecognizer()
    rec.update_grammar(parser)
    log.info("voice: %s recognizer for %s (model %s)", rec.name, parser.lang, rec.model)
    return rec
