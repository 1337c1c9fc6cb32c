"""A detector with a fixed answer, for tests of what happens *around* detectors (fusion, registry,
monitoring). Real-model behaviour is tested with the real MesoNet weights."""

from __future__ import annotations

from pipeline import BaseDetector, DetectionResult, ModelInfo


class FixedDetector(BaseDetector):
    def __init__(
        self, model_name: str = "fixed", device: str = "cpu", p: float = 0.5, fail: bool = False, load_ok: bool = True
    ):
        super().__init__(model_name, device)
        self.p, self.fail, self.load_ok = p, fail, load_ok

    def load_model(self, model_path: str | None = None) -> bool:
        if model_path == "raise":
            raise FileNotFoundError("no such checkpoint: raise")
        self.is_model_loaded = self.load_ok
        return self.load_ok

    def preprocess(self, image):
        return image

    def predict(self, image) -> DetectionResult:
        if self.fail:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return DetectionResult.from_probability(self.p, self.model_name)

    def get_model_info(self) -> ModelInfo:
        return ModelInfo(name=self.model_name, architecture="fixed")
