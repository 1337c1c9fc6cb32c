"""Read the weights of a Keras model saved with ``save_weights`` (HDF5), for strict loading.

The file's root lists layer groups; each group holds datasets named ``<layer>/<weight>:0``.
Layers are returned per kind (``conv2d``, ``batch_normalization``, ``dense``) in the order of
their numeric suffix, which is Keras' creation order: files trained in one session carry offset
numbers (Meso4_DF.h5 starts at conv2d_5), so the order, not the numbers, identifies a layer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ModelLoadError

_NAME = re.compile(r"^(?P<kind>[a-z_0-9]+?)_(?P<index>\d+)$")


@dataclass
class KerasLayer:
    name: str
    kind: str
    weights: dict[str, np.ndarray]  # "kernel", "bias", "gamma", ... → array


def read_keras_layers(path: str | Path) -> dict[str, list[KerasLayer]]:
    """Layers with weights, grouped by kind, each group in creation order."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as h5:
            root = h5.get("model_weights", h5)  # full-model saves nest the weights
            layers = []
            for name in root:
                arrays = _datasets(root[name])
                if arrays:
                    layers.append((name, arrays))
    except (OSError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"{path}: not a readable Keras HDF5 weights file ({type(exc).__name__}: {exc})") from exc
    by_kind: dict[str, list[tuple[int, KerasLayer]]] = {}
    for name, arrays in layers:
        for weight, array in arrays.items():
            if not np.isfinite(array).all():  # loads "fine", then every score is NaN
                raise ModelLoadError(
                    f"{path}: layer {name} {weight} holds {int((~np.isfinite(array)).sum())} non-finite values"
                )
        match = _NAME.match(name)
        kind, index = (match["kind"], int(match["index"])) if match else (name, 0)
        by_kind.setdefault(kind, []).append((index, KerasLayer(name, kind, arrays)))
    return {kind: [layer for _, layer in sorted(items, key=lambda t: t[0])] for kind, items in by_kind.items()}


def _datasets(group: object) -> dict[str, np.ndarray]:
    """Every dataset under ``group``, keyed by its short weight name (``conv2d_1/kernel:0`` → ``kernel``)."""
    import h5py

    arrays: dict[str, np.ndarray] = {}

    def collect(key: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            arrays[key.rsplit("/", 1)[-1].split(":")[0]] = np.asarray(obj[()], dtype=np.float32)

    group.visititems(collect)  # type: ignore[attr-defined]
    return arrays
