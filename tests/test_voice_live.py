"""The voice of a live stream: a real RTSP server (GStreamer) sends a face clip with espeak-ng speech
as an AAC track, and a real Mosquitto carries the voice verdicts. The sound's time lines up with
the pictures', the audio track can disappear (the camera comes back without a microphone) and come
back, and the state says so."""

from __future__ import annotations

import asyncio

import jsonschema
import pytest

from pipeline.models.audio.loading import load_voice_models
from pipeline.monitoring.monitor import PerformanceMonitor
from pipeline.runtime.events import StreamState, Verdict, VoiceVerdict
from pipeline.runtime.runtime import Runtime
from sinks.mqtt import MqttConfig, MqttSink
from tests.helpers import TEST_WEIGHTS, MemorySink, load_detectors, make_config, scrape, until
from tests.mqtt_broker import Subscriber, payload_of, schema_for


@pytest.fixture
def live_voice(rtsp_server, sound_clips, aasist_dir, mosquitto, creds):
    if not TEST_WEIGHTS.is_dir():
        pytest.skip("DFSTREAM_TEST_WEIGHTS is not set")
    server = rtsp_server({"/cam": sound_clips["speech"]}, audio={"/cam"})
    config = make_config(
        TEST_WEIGHTS,
        [{"id": "cam", "url": server.url("/cam"), "retry_initial_s": 0.2, "retry_max_s": 0.5}],
        audio_detectors=[{"name": "aasist_l", "type": "aasist_l", "weights": str(aasist_dir / "AASIST-L.pth")}],
        sinks={"prometheus": {"port": 0}},
    )
    return server, config


def test_a_live_voice_is_judged_in_step_with_the_faces_and_survives_losing_its_track(
    live_voice, rtsp_server, sound_clips, mosquitto
):
    server, config = live_voice
    from sinks import PrometheusExporter

    monitor = PerformanceMonitor(config.monitoring)
    exporter = PrometheusExporter(config.sinks.prometheus, monitor).start()
    memory = MemorySink()

    def voices() -> list[VoiceVerdict]:
        return [e for e in memory.events if isinstance(e, VoiceVerdict)]

    def voice_state() -> str | None:
        states = [e for e in memory.events if isinstance(e, StreamState)]
        return states[-1].voice if states else None

    async def scenario() -> Subscriber:
        async with Subscriber(mosquitto) as sub:
            mqtt = MqttSink(MqttConfig(port=mosquitto.port))
            runtime = Runtime(
                config,
                load_detectors(config),
                [mqtt, memory],
                monitor,
                voices=load_voice_models(config.audio_detectors),
            )
            task = asyncio.create_task(runtime.run())
            await until(lambda: len([v for v in voices() if v.label != "no_speech"]) >= 3, 40, "3 voice verdicts")
            # the camera comes back without its microphone: faces go on, the voice is no_audio
            server.kill()
            quiet = rtsp_server({"/cam": sound_clips["mute"]}, port=server.port)
            heard = len(voices())
            await until(lambda: voice_state() == "no_audio", 20, "the voice to be no_audio")
            faces_before = len([e for e in memory.events if isinstance(e, Verdict)])
            await asyncio.sleep(2.0)
            assert len([e for e in memory.events if isinstance(e, Verdict)]) > faces_before
            assert len(voices()) <= heard + 1  # at most the window under way when the sound stopped
            # and with it again: voice verdicts resume
            quiet.kill()
            rtsp_server({"/cam": sound_clips["speech"]}, port=server.port, audio={"/cam"})
            again = len(voices())
            await until(lambda: len(voices()) >= again + 2, 40, "voice verdicts after the sound came back")
            metrics = scrape(exporter.port)
            runtime.stop.set()
            await asyncio.wait_for(task, 30)
            await sub.wait_for(lambda: len(sub.on("/cam/voice")) == len(voices()), 10)
            sub.metrics = metrics
            return sub

    try:
        sub = asyncio.run(scenario())
    finally:
        exporter.close()

    # every voice verdict reached the broker, in order, following its schema; Home Assistant has the voice
    payloads = [payload_of(m) for m in sub.messages if str(m.topic) == "dfstream/cam/voice"]
    for message in sub.messages:
        jsonschema.validate(payload_of(message), schema_for(str(message.topic)))
    assert [p["seq"] for p in payloads] == [v.seq for v in voices()] == list(range(1, len(payloads) + 1))
    topics = {str(m.topic) for m in sub.messages}
    assert "homeassistant/binary_sensor/dfstream/cam_voice_deepfake/config" in topics
    assert any(payload_of(m).get("voice") == "no_audio" for m in sub.messages if str(m.topic) == "dfstream/cam/state")

    # on one clock: the stream time of a window's end and of the frame decoded at that moment agree
    faces = [e for e in memory.events if isinstance(e, Verdict) and e.scored and e.frame_pts is not None]
    compared = 0
    for voice in voices():
        if voice.window_end_pts is None:
            continue
        frame = min(faces, key=lambda v: abs(v.scored_at - voice.window_end_ts))
        if abs(frame.scored_at - voice.window_end_ts) > 0.2:
            continue  # no frame decoded near that moment (a reconnect)
        offset = (voice.window_end_pts - frame.frame_pts) - (voice.window_end_ts - frame.scored_at)
        assert abs(offset) < 0.3, (voice, frame)  # well within one window (2-4 s)
        compared += 1
    assert compared >= 3
    metrics = sub.metrics
    judged = metrics["dfstream_voice_windows_total{result=judged,stream=cam}"]
    assert judged >= 5
    # each judged window took at least 2 s of new sound (after a reconnect, 2 s before the first),
    # counted in chunks of 0.1-0.12 s: at least 15 chunks a window
    assert metrics["dfstream_audio_chunks_total{stream=cam}"] >= 15 * judged
    assert metrics["dfstream_stage_latency_seconds_count{stage=window_to_voice}"] >= 5
    assert 0.3 <= metrics["dfstream_speech_ratio{stream=cam}"] <= 1.0
