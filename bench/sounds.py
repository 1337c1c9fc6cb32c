"""Sound made on this machine for the voice benchmarks and tests: espeak-ng speech and sox music,
noise and tones (Debian's espeak-ng and sox), written as WAV files and read back as 16 kHz mono
float32 in [-1, 1], the voice models' input."""

from __future__ import annotations

import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

SENTENCES = (
    "Good morning. I am calling from the bank about your account. Please confirm the payment of four "
    "thousand dollars before noon today, otherwise the transfer will be cancelled and the fees will apply.",
    "This is the evening news. The council met on Tuesday to discuss the new bridge, and the vote was "
    "postponed until next month after a long debate about the cost.",
)

# name → how it is made; the names say what a speech gate should answer
SOUNDS = ("speech", "speech_over_music", "speech_in_noise", "music", "noise", "tones", "silence")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed (Debian: apt-get install espeak-ng sox)")
    return path


def speak(text: str, path: Path, voice: str = "en-us", words_per_minute: int = 150) -> Path:
    subprocess.run([tool("espeak-ng"), "-v", voice, "-s", str(words_per_minute), "-w", str(path), text], check=True)
    return path


def sox(*args: str) -> None:
    subprocess.run([tool("sox"), *args], check=True, capture_output=True)


def read_wav(path: Path) -> np.ndarray:
    """A 16-bit PCM WAV as float32 in [-1, 1], channels averaged (sox writes what we ask it for)."""
    with wave.open(str(path)) as w:
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        return data.reshape(-1, w.getnchannels()).mean(axis=1)


def make_wav(name: str, folder: Path, seconds: float = 10.0, rate: int = 16_000, channels: int = 1) -> Path:
    """One of ``SOUNDS`` as a 16-bit WAV at ``rate`` Hz with ``channels`` channels."""
    out = folder / f"{name}_{rate}_{channels}.wav"
    raw = folder / f"{name}_espeak.wav"
    fmt = ["-r", str(rate), "-c", str(channels), "-b", "16"]
    music = ["synth", f"{seconds}", "pluck", "C3", "pluck", "E3", "pluck", "G3", "tremolo", "3", "60"]
    if name.startswith("speech"):
        speak(" ".join(SENTENCES), raw)
        spoken = folder / f"{name}_spoken.wav"
        sox(str(raw), "-r", "16000", "-c", "1", str(spoken), "trim", "0", f"{seconds}")
        if name == "speech":
            sox(str(spoken), *fmt, str(out))
        else:
            bed = folder / f"{name}_bed.wav"
            sound = music if name == "speech_over_music" else ["synth", f"{seconds}", "pinknoise"]
            sox("-n", "-r", "16000", "-c", "1", str(bed), *sound, "vol", "0.1")
            sox("-m", str(spoken), str(bed), *fmt, str(out), "trim", "0", f"{seconds}")
    elif name == "music":
        sox("-n", *fmt, str(out), *music, "vol", "0.5")
    elif name == "noise":
        sox("-n", *fmt, str(out), "synth", f"{seconds}", "pinknoise", "vol", "0.2")
    elif name == "tones":
        sox("-n", *fmt, str(out), "synth", f"{seconds}", "sine", "440", "sine", "880", "vol", "0.3")
    elif name == "silence":
        sox("-n", *fmt, str(out), "trim", "0", f"{seconds}")
    else:
        raise ValueError(f"unknown sound {name!r} (known: {', '.join(SOUNDS)})")
    return out


def make_sound(name: str, folder: Path, seconds: float = 10.0) -> np.ndarray:
    """One of ``SOUNDS``, 16 kHz mono float32."""
    return read_wav(make_wav(name, folder, seconds))


def mux_with_sound(video: Path, wav: Path | None, out: Path, seconds: float) -> Path:
    """``video``'s pictures (looped to ``seconds``, at its frame rate) with ``wav``'s sound as AAC,
    into an MP4 (H.264) as a camera with a microphone would send it; ``wav`` None: no audio track."""
    import av

    frames = []
    with av.open(str(video)) as source:
        fps = round(float(source.streams.video[0].average_rate or 25))
        for frame in source.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) >= seconds * fps:
                break
    height, width = frames[0].shape[:2]
    with av.open(str(out), "w") as target:
        picture = target.add_stream("libx264", rate=fps, options={"preset": "veryfast", "g": str(fps)})
        picture.width, picture.height, picture.pix_fmt = width - width % 2, height - height % 2, "yuv420p"
        sound = None
        if wav is not None:
            with wave.open(str(wav)) as w:
                rate, channels = w.getframerate(), w.getnchannels()
                pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, channels)
            sound = target.add_stream("aac", rate=rate, layout="stereo" if channels == 2 else "mono")
        for i in range(int(seconds * fps)):
            image = frames[i % len(frames)][: picture.height, : picture.width]
            for packet in picture.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")):
                target.mux(packet)
        if sound is not None:
            pcm = pcm[: int(seconds * rate)]
            step = 1024
            for start in range(0, len(pcm), step):
                block = np.ascontiguousarray(pcm[start : start + step].T if channels > 1 else pcm[start : start + step])
                frame = av.AudioFrame.from_ndarray(
                    block.reshape(channels, -1) if channels > 1 else block.reshape(1, -1),
                    format="s16p" if channels > 1 else "s16",
                    layout="stereo" if channels == 2 else "mono",
                )
                frame.sample_rate, frame.pts = rate, start
                for packet in sound.encode(frame):
                    target.mux(packet)
            for packet in sound.encode(None):
                target.mux(packet)
        for packet in picture.encode(None):
            target.mux(packet)
    return out


def encode_sound(wav: Path, out: Path, rate: int, codec: str = "libmp3lame") -> Path:
    """``wav`` re-encoded with PyAV's own FFmpeg (MP3 by default), mono at ``rate`` Hz: Debian's sox
    writes no MP3 without libsox-fmt-mp3, and PyAV is always here."""
    import av

    with av.open(str(wav)) as source, av.open(str(out), "w") as target:
        stream = target.add_stream(codec, rate=rate, layout="mono")
        fmt = stream.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=fmt, layout="mono", rate=rate, frame_size=stream.codec_context.frame_size)
        for frame in source.decode(audio=0):
            frame.pts = None
            for block in resampler.resample(frame):
                for packet in stream.encode(block):
                    target.mux(packet)
        for block in resampler.resample(None):
            for packet in stream.encode(block):
                target.mux(packet)
        for packet in stream.encode(None):
            target.mux(packet)
    return out
