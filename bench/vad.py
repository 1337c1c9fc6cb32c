"""Which voice-activity detector gates the voice models: silero-vad against WebRTC VAD, measured.

    python -m bench.vad

Sound made here (espeak-ng speech; sox music, noise and tones), 16 kHz mono. Printed for each
detector and each clip: the share of the clip's frames it calls speech (what the gate compares
with ``voice.min_speech``), and what it costs per second of audio on one core. A good gate says
"speech" for most of the spoken clips (espeak leaves short pauses between words) and for little
of the music, noise and tones, since everything it lets through is judged by a spoof model, and
a spoof model calls music and noise "spoof" (README, "Voice models").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.sounds import SOUNDS, make_sound
from pipeline.judging.speech import SileroGate, WebrtcGate, speech_frames


def measure(gate_factory, audio: np.ndarray) -> tuple[float, float]:
    """(share of frames called speech, seconds of one core per second of audio)."""
    gate = gate_factory()
    started = time.process_time()
    flags = speech_frames(gate, audio)
    spent = time.process_time() - started
    return float(np.mean(flags)) if len(flags) else 0.0, spent / (len(audio) / 16_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args()
    import torch

    torch.set_num_threads(1)
    gates = {
        "silero-vad (ONNX)": lambda: SileroGate(threshold=0.5),
        "webrtcvad mode 2": lambda: WebrtcGate(aggressiveness=2),
        "webrtcvad mode 3": lambda: WebrtcGate(aggressiveness=3),
    }
    with tempfile.TemporaryDirectory() as tmp:
        clips = {name: make_sound(name, Path(tmp)) for name in SOUNDS}
        print(f"{'clip':<22}" + "".join(f"{g:>20}" for g in gates))
        costs: dict[str, list[float]] = {g: [] for g in gates}
        for name, audio in clips.items():
            row = f"{name:<22}"
            for g, factory in gates.items():
                share, cost = measure(factory, audio)
                costs[g].append(cost)
                row += f"{share:>19.0%} "
            print(row)
        print(f"{'core s per audio s':<22}" + "".join(f"{np.median(costs[g]):>19.4f} " for g in gates))


if __name__ == "__main__":
    main()
