"""The voice path with real sound made here (espeak-ng speech, sox music and noise, silence) in
clips with a face: decoded beside the pictures and resampled to 16 kHz mono on the stream clock,
gated by the real speech gate, judged by AASIST, published as voice verdicts that follow their
schema. Over a real RTSP server with an AAC track, see test_voice_live.py."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import numpy as np
import pytest

from bench.sounds import make_sound
from core.errors import ConfigError, ModelLoadError
from dfstream.config import parse_config
from pipeline.judging.listening import Listener, VoiceConfig
from pipeline.judging.speech import SileroGate
from pipeline.models.audio.aasist import SAMPLE_RATE
from pipeline.models.audio.loading import load_voice_models
from pipeline.monitoring.keys import Count, Subject
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.runtime import Runtime
from sinks.jsonl import JsonlConfig, JsonlSink
from stream import AudioChunk, Source, StreamConfig
from tests.helpers import REPO, TEST_WEIGHTS, load_detectors, make_config

SCHEMAS = REPO / "configs" / "schemas"


async def heard(url: str, listen: bool = True) -> tuple[int, list[AudioChunk], dict]:
    async with Source(StreamConfig(id="s", url=str(url), pace="asap"), listen=listen) as source:

        async def frames() -> int:
            return len([f async for f in source])

        async def sound() -> list[AudioChunk]:
            return [c async for c in source.sound()]

        count, chunks = await asyncio.gather(frames(), sound())
        return count, chunks, dict(source.counters.values)


@pytest.mark.parametrize("rate, channels", [(44_100, 2), (48_000, 1), (8_000, 1), (22_050, 2)])
def test_sound_arrives_as_16k_mono_on_the_stream_clock(tmp_path, face_clip, rate, channels):
    from bench.sounds import make_wav, mux_with_sound

    clip = mux_with_sound(face_clip, make_wav("speech", tmp_path, 6.0, rate, channels), tmp_path / "c.mp4", 6.0)
    frames, chunks, counts = asyncio.run(heard(clip))
    samples = np.concatenate([c.samples for c in chunks])
    assert frames == 180 and samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) / SAMPLE_RATE - 6.0) < 0.1, len(samples) / SAMPLE_RATE
    assert 0.05 < float(np.abs(samples).max()) < 1.5  # the speech is there, at its level: no normalisation
    # each chunk starts where the one before ended, on the same clock as the frames (0 to 6 s)
    assert chunks[0].gap and not any(c.gap for c in chunks[1:])
    for before, after in zip(chunks, chunks[1:]):
        assert after.pts == pytest.approx(before.pts + before.seconds, abs=1e-6)
    assert 0.0 <= chunks[0].pts < 0.1 and chunks[-1].pts + chunks[-1].seconds == pytest.approx(6.0, abs=0.1)
    assert counts["audio_chunks"] == len(chunks) and "audio_decode_errors" not in counts


def test_a_stream_without_sound_or_a_runtime_that_does_not_listen_decodes_no_audio(sound_clips):
    frames, chunks, counts = asyncio.run(heard(sound_clips["mute"]))
    assert frames == 300 and chunks == [] and "audio_chunks" not in counts
    frames, chunks, counts = asyncio.run(heard(sound_clips["speech"], listen=False))
    assert frames == 300 and chunks == [] and "audio_chunks" not in counts


def chunked(audio: np.ndarray, start: float = 0.0, gap: bool = True) -> list[AudioChunk]:
    n = 1600
    return [
        AudioChunk("s", start + i / SAMPLE_RATE, 0.0, 0.0, audio[i : i + n], gap and i == 0)
        for i in range(0, len(audio), n)
    ]


@pytest.fixture(scope="module")
def sounds(tmp_path_factory) -> dict[str, np.ndarray]:
    folder = tmp_path_factory.mktemp("sounds")
    return {name: make_sound(name, folder, 10.0) for name in ("speech", "speech_in_noise", "music", "noise", "silence")}


def test_windows_come_every_hop_and_only_speech_passes_the_gate(sounds):
    config = VoiceConfig()
    for name, audio in sounds.items():
        listener = Listener(config, SileroGate(config.vad_threshold))
        windows = [w for c in chunked(audio) if (w := listener.hear(c)) is not None]
        # the first once 2 s have come (tiled by the model), then one every 2 s, each at most 4.04 s
        assert [round(w.pts_end, 1) for w in windows] == [2.0, 4.0, 6.0, 8.0, 10.0], name
        assert [round(w.seconds, 2) for w in windows] == [2.0, 4.0, 4.04, 4.04, 4.04]
        assert all(w.pts_start == pytest.approx(w.pts_end - w.seconds) for w in windows)
        speaking = [listener.speaking(w) for w in windows]
        assert all(speaking) if name.startswith("speech") else not any(speaking), (name, [w.speech for w in windows])


def test_a_gap_in_the_sound_starts_the_window_afresh(sounds):
    config = VoiceConfig()
    listener = Listener(config, SileroGate(config.vad_threshold))
    speech = sounds["speech"]
    first = [w for c in chunked(speech[: 5 * SAMPLE_RATE]) if (w := listener.hear(c)) is not None]
    after = [w for c in chunked(speech[: 5 * SAMPLE_RATE], start=100.0) if (w := listener.hear(c)) is not None]
    assert [round(w.pts_end, 1) for w in first] == [2.0, 4.0]
    # nothing joins sound from both sides: the first window after the gap holds only what came after it
    assert [(round(w.pts_start, 1), round(w.pts_end, 1)) for w in after] == [(100.0, 102.0), (100.0, 104.0)]


@pytest.fixture(scope="module")
def voice_run(sound_clips, aasist_dir, tmp_path_factory):
    """Every sound clip judged in one runtime (AASIST on ONNX Runtime beside both MesoNets), read asap;
    the voice labelled by its ema (P(spoof) alone: the default cusum against real speech takes minutes
    of a voice AASIST calls spoof, tests/unit/test_evidence.py)."""
    if not TEST_WEIGHTS.is_dir():
        pytest.skip("DFSTREAM_TEST_WEIGHTS is not set")
    out = tmp_path_factory.mktemp("voice") / "events.jsonl"
    config = make_config(
        TEST_WEIGHTS,
        [{"id": name, "url": str(path), "pace": "asap"} for name, path in sound_clips.items()]
        + [{"id": "unheard", "url": str(sound_clips["speech"]), "pace": "asap", "audio": "off"}],
        audio_detectors=[{"name": "aasist", "type": "aasist", "weights": str(aasist_dir / "AASIST.pth")}],
        voice={"smoothing": {"method": "ema"}},
    )
    monitor = PerformanceMonitor(config.monitoring)
    runtime = Runtime(
        config,
        load_detectors(config),
        [JsonlSink(JsonlConfig(path=str(out)))],
        monitor,
        voices=load_voice_models(config.audio_detectors),
    )
    asyncio.run(runtime.run())
    return [json.loads(line) for line in out.read_text().splitlines()], monitor


def of(events: list[dict], kind: str, stream: str) -> list[dict]:
    return [e for e in events if e["type"] == kind and e["stream"] == stream]


def test_speech_gets_voice_verdicts_and_espeak_is_heard_as_synthetic(voice_run):
    events, monitor = voice_run
    voices = of(events, "voice", "speech")
    schema = json.loads((SCHEMAS / "voice.schema.json").read_text())
    for voice in voices:
        jsonschema.validate({k: v for k, v in voice.items() if k != "type"}, schema)
    assert [v["seq"] for v in voices] == list(range(1, len(voices) + 1)) and len(voices) == 5
    assert all(v["label"] != "no_speech" and v["speech"] >= 0.3 and set(v["models"]) == {"aasist"} for v in voices)
    # espeak-ng is a formant synthesiser: AASIST, trained on 2019 TTS, calls it spoof (P ~ 1); the
    # label waits for the second window (voice.smoothing.min_frames), then holds
    assert voices[0]["label"] == "uncertain" and {v["label"] for v in voices[1:]} == {"fake"}
    assert all(v["spoof_probability"] > 0.9 for v in voices)
    states = of(events, "state", "speech")
    assert any(s["voice"] == "fake" and "voice" in s["looks_fake"] for s in states)
    assert states[-1]["voice"] == "no_audio"  # the stream ended
    assert monitor.counter(Subject.stream("speech"), Count.VOICE_WINDOWS, result="judged") == 5


@pytest.mark.parametrize("stream", ["music", "noise", "silence"])
def test_music_noise_and_silence_are_no_speech_never_a_spoof(voice_run, stream):
    events, monitor = voice_run
    voices = of(events, "voice", stream)
    assert len(voices) == 5 and {v["label"] for v in voices} == {"no_speech"}
    assert all(v["spoof_probability"] is None and v["models"] == {} for v in voices)
    assert {s["voice"] for s in of(events, "state", stream)} <= {"no_audio", "no_speech"}
    assert monitor.counter(Subject.stream(stream), Count.VOICE_WINDOWS, result="no_speech") == 5


def test_a_stream_without_sound_says_no_audio_and_audio_off_is_not_judged(voice_run):
    events, monitor = voice_run
    assert of(events, "voice", "mute") == [] and of(events, "voice", "unheard") == []
    assert {s["voice"] for s in of(events, "state", "mute")} == {"no_audio"}
    assert {s["voice"] for s in of(events, "state", "unheard")} == {None}
    assert monitor.counter(Subject.stream("unheard"), Count.AUDIO_CHUNKS) == 0
    # the faces were judged on every stream all the same
    assert all(of(events, "verdict", s) for s in ("mute", "unheard", "speech", "music"))


def test_voice_model_configuration_errors_name_what_is_wrong(aasist_dir, tmp_path):
    base = {"streams": [{"id": "a", "url": "sample://"}], "detectors": [{"name": "meso4", "type": "meso4"}]}
    with pytest.raises(ConfigError, match=r"audio_detectors\[0\]\.name: 'meso4' is also a detector's name"):
        parse_config({**base, "audio_detectors": [{"name": "meso4", "type": "aasist"}]})
    with pytest.raises(ConfigError, match=r"audio_detectors\[0\]\.type: Input should be 'aasist', 'aasist_l' or 'onn"):
        parse_config({**base, "audio_detectors": [{"name": "v", "type": "wav2vec"}]})
    truncated = tmp_path / "AASIST.pth"
    truncated.write_bytes((aasist_dir / "AASIST.pth").read_bytes()[:50_000])
    config = parse_config({**base, "audio_detectors": [{"name": "v", "type": "aasist", "weights": str(truncated)}]})
    with pytest.raises(ModelLoadError, match=r"audio detector 'v': .*AASIST\.pth"):
        load_voice_models(config.audio_detectors)


class KeptRecords:
    """An EventWriter that keeps the newest record of each event (the database's upsert, in memory)."""

    def __init__(self) -> None:
        self.records: dict[str, object] = {}

    def write(self, records) -> None:
        for record in records:
            self.records[record.id] = record

    def reachable(self) -> bool:
        return True


def voice_verdict(seq: int, label: str, spoof: float | None, audio: np.ndarray | None = None):
    from pipeline.runtime.events import VoiceVerdict

    return VoiceVerdict(
        stream="call",
        seq=seq,
        ts=1000.0 + 2 * seq,
        label=label,
        label_since=1000.0 + 2 * seq,
        spoof_probability=spoof,
        raw_probability=spoof,
        uncertainty=0.1 if spoof is not None else None,
        models={"aasist": spoof} if spoof is not None else {},
        speech=0.9 if spoof is not None else 0.0,
        window_start_pts=2.0 * seq - 4,
        window_end_pts=2.0 * seq,
        window_s=4.04,
        window_end_ts=1000.0 + 2 * seq,
        latency_ms=300.0,
        audio=audio,
    )


def test_a_voice_episode_spans_pauses_in_speech_and_keeps_the_peak_window_as_wav():
    import io
    import wave

    from pipeline.runtime.events import StreamState
    from sinks.store import StoreConfig, StoreSink

    writer = KeptRecords()
    peak = (0.5 * np.sin(np.linspace(0, 2000, 64_600))).astype(np.float32)

    async def scenario() -> None:
        async with StoreSink(StoreConfig(flush_interval_s=0.05), writer, PerformanceMonitor()) as sink:
            await sink.publish(voice_verdict(1, "fake", 0.91, np.zeros(64_600, np.float32)))
            await sink.publish(voice_verdict(2, "no_speech", None))  # a pause: the episode goes on
            await sink.publish(voice_verdict(3, "fake", 0.99, peak))
            await sink.publish(voice_verdict(4, "real", 0.2))  # ends it
            await sink.publish(voice_verdict(5, "fake", 0.95, peak))  # a second one...
            await sink.publish(StreamState("call", "real", {1: "real"}, 0.1, 1011.0, "no_audio", None))  # ...ended
            await asyncio.sleep(0.3)

    asyncio.run(scenario())
    first, second = sorted(writer.records.values(), key=lambda r: r.started_at)
    assert (first.modality, first.track_id, first.verdicts, first.peak_probability) == ("voice", 0, 2, 0.99)
    assert (first.started_at, first.ended_at, first.bbox_at_peak) == (1002.0, 1008.0, ())
    with wave.open(io.BytesIO(first.audio_wav)) as w:
        kept = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32767
    assert np.abs(kept - peak).max() < 1e-3  # the peak window's sound, not the first one's silence
    assert (second.verdicts, second.ended_at) == (1, 1011.0)


def test_dfstream_check_names_a_voice_models_missing_or_wrong_weights(tmp_path):
    from dfstream.config import verify_files

    base = {"streams": [{"id": "a", "url": "sample://"}], "detectors": [{"name": "meso4", "type": "meso4"}]}
    missing = parse_config({**base, "audio_detectors": [{"name": "v", "type": "aasist", "weights": "nope.pth"}]})
    assert verify_files(missing) == [
        "audio_detectors[0].weights: no such file 'nope.pth' (and not a name in configs/models.yaml)"
    ]
    wrong = parse_config({**base, "audio_detectors": [{"name": "v", "type": "aasist", "weights": "meso4_df"}]})
    assert verify_files(wrong) == [
        "audio_detectors[0].weights: 'meso4_df' is a face detector's weights, not a voice model's"
    ]
    assert verify_files(parse_config({**base, "audio_detectors": [{"name": "v", "type": "aasist_l"}]})) == []
