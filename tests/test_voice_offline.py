"""The voice offline: `dfstream eval --audio-detectors` on audio files and videos with sound.

Nothing on this machine is bona fide speech: every voice here is espeak-ng's, a formant synthesiser
that AASIST calls spoof. The "real" class below is espeak too (another voice, slower, with reverb),
labelled real so that both classes exist: these tests check the mechanics (windows, AUC and EER
computed and reported, files without speech skipped with the reason), not the model's skill."""

from __future__ import annotations

import asyncio
import json

import pytest

from bench.sounds import SENTENCES, encode_sound, mux_with_sound, sox, speak
from core.errors import ConfigError
from dfstream.cli import main
from pipeline.evaluation.voice import listen
from pipeline.judging.evidence import PACKAGED_VOICE, VOICE, load_baseline
from pipeline.judging.listening import VoiceConfig
from pipeline.judging.smoothing import Smoothing
from pipeline.models.audio.loading import load_voice_models
from pipeline.runtime.events import VoiceVerdict
from pipeline.runtime.runtime import Runtime
from tests.helpers import TEST_WEIGHTS, MemorySink, load_detectors, make_config


@pytest.fixture(scope="module")
def voice_set(tmp_path_factory, face_clip):
    root = tmp_path_factory.mktemp("voices")
    (root / "real").mkdir()
    (root / "fake").mkdir()
    spoken = speak(SENTENCES[0], root / "spoken.wav")
    sox(str(spoken), "-r", "16000", "-c", "1", str(root / "fake" / "call.wav"))
    sox(str(spoken), "-r", "48000", "-c", "2", str(root / "fake" / "call_stereo.flac"))
    mux_with_sound(face_clip, root / "fake" / "call.wav", root / "fake" / "call_video.mp4", 8.0)
    other = speak(SENTENCES[1], root / "other.wav", voice="en-gb", words_per_minute=130)
    sox(str(other), "-r", "16000", "-c", "1", str(root / "real" / "news.wav"), "pitch", "-200", "reverb", "40")
    encode_sound(other, root / "real" / "news.mp3", rate=22050)
    sox("-n", "-r", "16000", "-c", "1", str(root / "real" / "quiet.wav"), "trim", "0", "5")
    return root


def test_a_file_is_listened_to_as_a_stream_is(voice_set):
    windows = listen(voice_set / "fake" / "call.wav", VoiceConfig())
    seconds = max(w.pts_end for w in windows)
    assert len(windows) == int(seconds // 2) + (seconds % 2 >= 0.5)  # every 2 s, and the rest at the end
    assert all(w.speech > 0.5 for w in windows[:-1])
    assert listen(voice_set / "real" / "quiet.wav", VoiceConfig())[0].speech == 0.0


def test_eval_reports_auc_and_eer_per_voice_model_and_fused(voice_set, aasist_dir, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(
        [
            "eval",
            str(voice_set),
            "--audio-detectors",
            f"aasist_l={aasist_dir / 'AASIST-L.pth'}",
            f"aasist={aasist_dir / 'AASIST.pth'}",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr()
    report = json.loads((out / "voice_report.json").read_text())
    assert report["items_scored"] == 5 and [s["path"].rsplit("/", 1)[1] for s in report["skipped"]] == ["quiet.wav"]
    assert "no window held speech" in report["skipped"][0]["reason"] and "quiet.wav not judged" in printed.err
    assert report["windows_judged"] >= 12
    for name in ("aasist", "aasist_l", "fused"):
        for level in ("window", "file"):
            figures = report["models"][name][level]
            assert 0.0 <= figures["auc"] <= 1.0 and 0.0 <= figures["eer"] <= 1.0, (name, level, figures)
        assert report["models"][name]["file"]["n"] == 5 and report["models"][name]["file"]["fakes"] == 3
    rows = (out / "voice_windows.csv").read_text().splitlines()
    assert rows[0] == "path,label,start,end,speech,aasist_l,aasist,fused" and len(rows) > 12
    assert (out / "roc_voice.png").stat().st_size > 10_000
    assert "voice model" in printed.out and "fused" in printed.out
    assert main(["eval", str(voice_set), "--out", str(out)]) == 2  # neither --detectors nor --audio-detectors


def test_annotate_keeps_the_sound_and_draws_the_voice_badge(sound_clips, aasist_dir, tmp_path, capsys):
    import av
    import numpy as np

    if not TEST_WEIGHTS.is_dir():
        pytest.skip("DFSTREAM_TEST_WEIGHTS is not set")
    out = tmp_path / "call.mp4"
    code = main(
        [
            "annotate",
            str(sound_clips["speech"]),
            "--out",
            str(out),
            "--detectors",
            f"meso4={TEST_WEIGHTS / 'Meso4_DF.h5'}",
            "--audio-detectors",
            f"aasist_l={aasist_dir / 'AASIST-L.pth'}",
        ]
    )
    assert code == 0 and "its sound kept, 5 voice windows" in capsys.readouterr().out
    with av.open(str(sound_clips["speech"])) as source, av.open(str(out)) as annotated:
        kept, original = annotated.streams.audio[0], source.streams.audio[0]
        assert (kept.codec_context.name, kept.sample_rate, kept.channels) == ("aac", 44_100, 2)
        assert kept.frames == original.frames  # every packet copied
        frames = [f.to_ndarray(format="rgb24") for f in annotated.decode(video=0)]
    assert len(frames) == 300

    def badge(image: np.ndarray) -> float:  # red (fake) pixels in the top-left corner
        corner = image[:40, :200].astype(int)
        return float(((abs(corner - (220, 38, 38)).sum(axis=2)) < 60).mean())

    assert badge(frames[30]) < 0.02  # 1 s in: no window has ended yet
    # from the second window on the voice is labelled (voice.smoothing.min_frames), espeak as synthetic
    assert all(badge(f) > 0.3 for f in frames[150:])


def test_calibrate_real_only_fits_the_voices_baseline_that_the_runtime_then_judges_by(
    voice_set, sound_clips, aasist_dir, tmp_path, capsys
):
    """A site's own recordings, no labels: AASIST-L (no packaged baseline) calls espeak spoof, so a
    site whose people sound like that fits its real speech, and its voices are no longer alarmed;
    the file is refused for another model, and the mistakes are one line each."""
    from tests.helpers import TEST_WEIGHTS

    if not TEST_WEIGHTS.is_dir():
        pytest.skip("DFSTREAM_TEST_WEIGHTS is not set")
    site = tmp_path / "site"
    site.mkdir()
    for i, (voice, wpm) in enumerate([("en-us", 150), ("en-gb", 130), ("en-us", 120), ("en-gb", 160)]):
        for j, sentence in enumerate(SENTENCES):
            spoken = speak(f"{sentence} {SENTENCES[1 - j]}", tmp_path / f"raw{i}{j}.wav", voice, wpm)
            sox(str(spoken), "-r", "16000", "-c", "1", str(site / f"desk{i}{j}.wav"), "pitch", str(100 * (i - 2)))
    out = tmp_path / "voice_baseline.json"
    light = f"aasist_l={aasist_dir / 'AASIST-L.pth'}"
    assert main(["calibrate", "--real-only", str(site), "--audio-detectors", light, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "8 real recording(s), 0 labelled fake(s)" in printed and "voice: 8 real tracks" in printed
    assert "set voice.smoothing.baseline" in printed
    baseline = load_baseline(out)
    assert set(baseline.real) == {VOICE} and baseline.fits(["aasist_l"], "weighted_average")
    assert baseline.real[VOICE].period_s == 2.0 and baseline.real[VOICE].seconds > 100

    config = make_config(
        TEST_WEIGHTS,
        [{"id": "desk", "url": str(sound_clips["speech"]), "pace": "asap"}],
        audio_detectors=[{"name": "aasist_l", "type": "aasist_l", "weights": str(aasist_dir / "AASIST-L.pth")}],
        voice={"smoothing": {"baseline": str(out)}},
    )
    memory = MemorySink()
    runtime = Runtime(config, load_detectors(config), [memory], voices=load_voice_models(config.audio_detectors))
    assert runtime.voice_smoothing is not None and runtime.voice_smoothing.rule.real == baseline.real[VOICE]
    asyncio.run(runtime.run())
    voices = [e for e in memory.events if isinstance(e, VoiceVerdict)]
    assert len(voices) == 5 and all(v.spoof_probability > 0.9 for v in voices)  # what AASIST-L says of espeak
    assert {v.label for v in voices} <= {"uncertain", "real"}  # ... is how this site's real people sound

    with pytest.raises(ConfigError, match=r"smoothing.baseline .*fitted for aasist_l .* these are aasist "):
        Smoothing.build(config.voice.smoothing, VOICE, ["aasist"], "weighted_average", PACKAGED_VOICE)
    assert main(["calibrate", "--real-only", "rtsp://127.0.0.1:9/x", "--audio-detectors", light, "--out", "x"]) == 2
    assert "fitted on files" in capsys.readouterr().err
    meso = f"meso4={TEST_WEIGHTS / 'Meso4_DF.h5'}"
    both = ["calibrate", "--real-only", str(site), "--detectors", meso, "--audio-detectors", light, "--out", "x"]
    assert main(both) == 2 and "not both" in capsys.readouterr().err
    assert main(["calibrate", str(voice_set), "--audio-detectors", light, "--out", "x"]) == 2
    assert "only with --real-only" in capsys.readouterr().err
