"""Strict loading of published PyTorch checkpoints.

Non-strict loading is how a checkpoint silently becomes random weights: a key prefix that does not
match makes ``load_state_dict(strict=False)`` skip every tensor and the model predicts noise. Here
every tensor of the file must land in the model and every tensor of the model must come from the
file, with equal shapes; anything else is a ``ModelLoadError`` naming the file and the keys.

Files are read with ``torch.load(weights_only=True)``: a checkpoint is data, never code to run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import ModelLoadError, one_line

WRAPPERS = ("state_dict", "model", "model_state_dict", "net")  # where training scripts nest the weights
SHOWN = 5  # keys listed per problem; the count says how many there are
_NUMPY_CORE = getattr(np, "_core", None) or np.core  # numpy 2 renamed it; the dependency allows 1.26
_NUMPY_SCALARS = [_NUMPY_CORE.multiarray.scalar, np.dtype, *(type(np.dtype(t)) for t in ("f8", "f4", "i8", "i4"))]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped from a training dict and a DataParallel
    ``module.`` prefix."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_NUMPY_SCALARS):  # training dicts keep best scores as numpy scalars
            data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises anything from EOFError to UnpicklingError for a bad file
        raise ModelLoadError(
            f"{path}: not a readable PyTorch checkpoint ({one_line(exc, with_type=True, limit=200)})"
        ) from exc
    if isinstance(data, Mapping):
        for key in WRAPPERS:
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ModelLoadError(f"{path}: holds no state_dict (a mapping of names to tensors)")
    state = dict(data)
    if all(k.startswith("module.") for k in state):  # saved from nn.DataParallel / DistributedDataParallel
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def load_strict(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    path: str | Path,
    prefix: str = "",
    rename: Callable[[str], str] | None = None,
) -> None:
    """Copy ``state`` into ``module``: the file's keys are ``prefix`` + the module's own keys
    (after ``rename``, where a library names a layer otherwise than the file)."""
    if prefix and not all(k.startswith(prefix) for k in state):
        stray = [k for k in state if not k.startswith(prefix)]
        raise ModelLoadError(
            f"{Path(path).name}: expected every key under {prefix!r}; {len(stray)} are not: {_some(stray)}"
        )
    renamed = {(rename or str)(k.removeprefix(prefix)): v for k, v in state.items()}
    prefix = "" if rename else prefix  # messages then name the module's keys
    own = module.state_dict()
    missing = [k for k in own if k not in renamed]
    unexpected = [k for k in renamed if k not in own]
    shapes = [
        f"{k} {tuple(renamed[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in renamed and renamed[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing: {_some(missing, prefix)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected: {_some(unexpected, prefix)}")
    if shapes:
        problems.append(f"{len(shapes)} with another shape: {_some(shapes, prefix)}")
    if problems:
        raise ModelLoadError(f"{Path(path).name} does not fit {type(module).__name__}: " + "; ".join(problems))
    non_finite = [k for k, v in renamed.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if non_finite:
        raise ModelLoadError(
            f"{Path(path).name}: {len(non_finite)} tensors hold NaN or inf: {_some(non_finite, prefix)}"
        )
    module.load_state_dict(renamed, strict=True)


def _some(keys: list[str], prefix: str = "") -> str:
    shown = ", ".join(prefix + k for k in keys[:SHOWN])
    return shown + (", ..." if len(keys) > SHOWN else "")
