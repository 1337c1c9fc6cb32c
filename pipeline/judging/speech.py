"""Speech gating: which stretches of a stream's audio hold speech, so that only those are judged.

A spoof model answers for whatever it is given, and AASIST calls music, noise and tones "spoof"
with near certainty (README, "Voice models"); a window is judged only when enough of it is speech.
The gate is silero-vad's ONNX model (MIT; the model file ships in its wheel, so nothing downloads),
chosen over WebRTC VAD by ``bench/vad.py``: see the README for the figures.

A gate is stateful (silero carries a recurrent state from frame to frame): one per stream.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from core.errors import ModelLoadError

SAMPLE_RATE = 16_000


class Gate(Protocol):
    frame_samples: int  # the gate judges frames of exactly this many 16 kHz samples

    def __call__(self, frame: np.ndarray) -> bool: ...

    def reset(self) -> None: ...


class SileroGate:
    """silero-vad's ONNX model on ONNX Runtime, one thread: 512-sample (32 ms) frames."""

    frame_samples = 512

    def __init__(self, threshold: float = 0.5):
        try:
            import torch
            from silero_vad import load_silero_vad
        except ImportError as exc:
            raise ModelLoadError(f"speech gate: silero-vad is not installed ({exc.name}): pip install silero-vad")
        self._torch = torch
        self.threshold = threshold
        self._model = load_silero_vad(onnx=True)

    def __call__(self, frame: np.ndarray) -> bool:
        probability = self._model(self._torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32)), SAMPLE_RATE)
        return float(probability.item()) >= self.threshold

    def reset(self) -> None:
        self._model.reset_states()


class WebrtcGate:
    """WebRTC's VAD (a Gaussian mixture over band energies): 480-sample (30 ms) frames, 16-bit PCM.
    Kept for ``bench/vad.py``'s comparison; ``pip install webrtcvad-wheels``."""

    frame_samples = 480

    def __init__(self, aggressiveness: int = 2):
        import webrtcvad

        self._vad = webrtcvad.Vad(aggressiveness)

    def __call__(self, frame: np.ndarray) -> bool:
        pcm = (np.clip(frame, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        return bool(self._vad.is_speech(pcm, SAMPLE_RATE))

    def reset(self) -> None:
        pass


def speech_frames(gate: Gate, audio: np.ndarray) -> np.ndarray:
    """The gate's answer for every whole frame of ``audio`` (a trailing part frame is not judged)."""
    n = gate.frame_samples
    return np.array([gate(audio[i : i + n]) for i in range(0, len(audio) - n + 1, n)], dtype=bool)
