"""A detector whose P(fake) follows the wall clock, for live tests that need a fake episode at a
known time (the MesoNets call the test clip's face real). Its "weights" file is the script:

    {"base": 0.05, "fake": 0.95, "windows": [[start_epoch, end_epoch], ...], "delay_s": 0.0}

``delay_s`` makes each face take that long (a slow model: an analysis a test can catch running).

The file is read again when it changes, so a test can script the episode once the server is up.
Importing this module registers the type ``scripted``; a ``dfstream`` process gets it through
``tests.service.launch``. Everything else in those tests (faces, tracking, fusion, smoothing,
sinks, the database, the API) is the real pipeline."""

from __future__ import annotations

import json
import os
import time

from pipeline import BaseDetector, DetectionResult, ModelInfo
from pipeline.models.plugins import register


@register("scripted")
class ScriptedDetector(BaseDetector):
    def __init__(self, model_name: str = "scripted", device: str = "cpu"):
        super().__init__(model_name, "cpu")
        self.script: dict = {"base": 0.05, "fake": 0.95, "windows": []}
        self.path: str | None = None
        self.read_at = 0.0

    def load_model(self, model_path: str | None = None) -> bool:
        self.path = model_path
        self._reread()
        self.is_model_loaded = True
        return True

    def _reread(self) -> None:
        if self.path and os.stat(self.path).st_mtime != self.read_at:
            self.read_at = os.stat(self.path).st_mtime
            with open(self.path) as fh:
                self.script = json.load(fh)

    def preprocess(self, image):
        return image

    def predict(self, image) -> DetectionResult:
        self._reread()
        now = time.time()
        fake = any(start <= now < end for start, end in self.script["windows"])
        time.sleep(self.script.get("delay_s", 0.0))
        return DetectionResult.from_probability(self.script["fake"] if fake else self.script["base"], self.model_name)

    def get_model_info(self) -> ModelInfo:
        return ModelInfo(name=self.model_name, architecture="scripted")
