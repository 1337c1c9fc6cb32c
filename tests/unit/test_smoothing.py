"""Smoothing and hysteresis against sequences worked out by hand."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipeline.judging.smoothing import SmoothingConfig, TrackSmoother


def run(config: SmoothingConfig, samples):
    smoother = TrackSmoother(config)
    return [smoother.update(p, u, t) for t, p, u in samples]


def test_ema():
    out = run(
        SmoothingConfig(method="ema", alpha=0.5, period_s=1, min_frames=1),
        [(0, 0.2, 0.1), (1, 0.8, 0.3), (2, 0.8, 0.1)],
    )
    # 0.2; 0.5·0.8 + 0.5·0.2 = 0.5; 0.5·0.8 + 0.5·0.5 = 0.65
    assert [o.probability for o in out] == pytest.approx([0.2, 0.5, 0.65])
    assert [o.uncertainty for o in out] == pytest.approx([0.1, 0.2, 0.15])


def test_window():
    out = run(
        SmoothingConfig(method="window", window=2, period_s=1, min_frames=1), [(0, 0.2, 0), (1, 0.8, 0), (2, 0.6, 0)]
    )
    assert [o.probability for o in out] == pytest.approx([0.2, 0.5, 0.7])


def test_none_passes_through():
    out = run(SmoothingConfig(method="none", min_frames=1), [(0, 0.2, 0), (1, 0.9, 0)])
    assert [o.probability for o in out] == [0.2, 0.9]


def test_hysteresis_enter_hold_leave():
    cfg = SmoothingConfig(method="none", enter=0.7, leave=0.4, min_duration_s=1.0, min_frames=2)
    samples = [
        (0.0, 0.9, 0.0),  # 1 frame < min_frames: uncertain (above enter since t=0)
        (0.5, 0.9, 0.0),  # above for 0.5 s < 1 s: real
        (1.0, 0.9, 0.0),  # above for 1.0 s: fake
        (1.5, 0.5, 0.0),  # between leave and enter: holds fake
        (2.0, 0.4, 0.0),  # <= leave: real
        (2.5, 0.8, 0.0),  # above again since 2.5: real
        (3.0, 0.6, 0.0),  # dipped below enter: the clock restarts
        (3.5, 0.8, 0.0),  # above since 3.5
        (4.5, 0.8, 0.0),  # for 1.0 s: fake
        (5.0, 0.8, 0.95),  # uncertainty above max_uncertainty (0.9): uncertain
    ]
    labels = [o.label for o in run(cfg, samples)]
    assert labels == ["uncertain", "real", "fake", "fake", "real", "real", "real", "real", "fake", "uncertain"]


def test_label_since_marks_each_change():
    cfg = SmoothingConfig(method="none", enter=0.7, leave=0.4, min_duration_s=0.0, min_frames=1)
    out = run(cfg, [(0, 0.1, 0), (1, 0.2, 0), (2, 0.9, 0), (3, 0.9, 0)])
    assert [(o.label, o.label_since) for o in out] == [("real", 0), ("real", 0), ("fake", 2), ("fake", 2)]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"enter": 0.3, "leave": 0.6}, "enter \\(0.3\\) must be >= leave \\(0.6\\)"),
        ({"alpha": 0}, "alpha"),
        ({"method": "kalman"}, "method"),
        ({"window": 0}, "window"),
    ],
)
def test_invalid_smoothing(options, message):
    with pytest.raises(ValidationError, match=message):
        SmoothingConfig(**options)
