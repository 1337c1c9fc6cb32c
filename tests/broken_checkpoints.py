"""Ways to break a Keras HDF5 checkpoint, shared by the fidelity tests and the reliability suite:
each writes a damaged copy of ``src`` to ``dst``."""

from __future__ import annotations

import shutil

import h5py
import numpy as np


def truncated(src, dst):
    data = src.read_bytes()
    dst.write_bytes(data[: len(data) // 2])


def random_bytes(src, dst):
    dst.write_bytes(np.random.default_rng(1).bytes(4096))


def empty(src, dst):
    dst.write_bytes(b"")


def reshaped_layer(src, dst):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h5:
        group = h5["conv2d_6/conv2d_6"]
        del group["kernel:0"]
        group.create_dataset("kernel:0", data=np.zeros((3, 3, 8, 8), dtype=np.float32))


def missing_bias(src, dst):
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as h5:
        del h5["dense_4/dense_4"]["bias:0"]
