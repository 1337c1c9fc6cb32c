"""The base of every configuration model, so that a typo in a file is an error, not a silent default."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors; assignments are validated like the file was."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
