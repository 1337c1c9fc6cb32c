"""`dfstream eval` and `dfstream calibrate` on a generated (synthetic) labelled set, and the metrics
they report, checked against values worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import ConfigError
from dfstream.cli import main
from pipeline.evaluation.datasets import Item, load_dataset
from pipeline.evaluation.metrics import (
    aggregate_confident,
    aggregate_majority,
    classification_report,
    equal_error_rate,
    roc_auc,
)
from pipeline.evaluation.scoring import parse_detector_spec
from tests.synthetic import make_labelled_set


# ---- metrics ----------------------------------------------------------------------------------------
def test_auc_is_the_share_of_correctly_ordered_pairs():
    # pairs (fake, real): (0.35 > 0.1) yes, (0.35 > 0.4) no, (0.8 > both) yes yes → 3 of 4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert roc_auc([1, 1], [0.2, 0.9]) is None  # undefined without both classes


def test_the_equal_error_rate_is_where_both_errors_meet():
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.0  # separated: no threshold errs
    assert equal_error_rate([0, 0, 1, 1], [0.9, 0.8, 0.1, 0.2]) == 1.0  # reversed: every one errs
    # one real (0.5) above one fake (0.4): with the threshold between them one real of two passes as
    # fake and one fake of two is missed, 50 % each; no threshold does better on both
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.5, 0.4, 0.9]) == pytest.approx(0.5)
    # three reals, one fake between them: at 0.5, one real of three over it (33 %), no fake missed;
    # over 0.6 the fake is missed (100 %): they meet between, where fpr = fnr
    assert equal_error_rate([0, 0, 0, 1], [0.1, 0.2, 0.6, 0.5]) == pytest.approx(1 / 3)
    assert equal_error_rate([1, 1], [0.2, 0.9]) is None


def test_classification_report_at_one_half():
    report = classification_report([0, 0, 1, 1, 1], [0.2, 0.7, 0.9, 0.6, 0.1])
    # predicted fake: 0.7 (real), 0.9, 0.6 (fake) → tp 2, fp 1, fn 1, tn 1
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["precision"] == pytest.approx(2 / 3) and report["recall"] == pytest.approx(2 / 3)
    assert report["f1"] == pytest.approx(2 / 3) and report["n"] == 5 and report["fakes"] == 3
    assert classification_report([0, 0], [0.1, 0.2])["precision"] is None  # no positive prediction


def test_video_aggregations():
    confident_fake = [0.9] * 13 + [0.1] * 19  # 13 > 32 // 2.5 = 12 and > 11 → the mean of the confident ones
    assert aggregate_confident(confident_fake) == pytest.approx(0.9)
    assert aggregate_confident([0.1] * 30 + [0.6] * 2) == pytest.approx(0.1)  # > 90 % confidently real
    assert aggregate_confident([0.3, 0.5, 0.7]) == pytest.approx(0.5)  # otherwise the mean
    assert aggregate_majority([0.9, 0.8, 0.1, 0.2, 0.7]) == pytest.approx(0.6)


# ---- datasets ---------------------------------------------------------------------------------------
def test_dataset_layouts(tmp_path):
    for folder in (
        "a/real",
        "a/fake/sub",
        "ff/original_sequences/youtube/c23/videos",
        "ff/manipulated_sequences/Deepfakes/c23/videos",
    ):
        (tmp_path / folder).mkdir(parents=True)
    for path in (
        "a/real/1.mp4",
        "a/fake/sub/2.png",
        "a/fake/notes.txt",
        "ff/original_sequences/youtube/c23/videos/000.mp4",
        "ff/manipulated_sequences/Deepfakes/c23/videos/000_003.mp4",
    ):
        (tmp_path / path).write_bytes(b"")
    assert load_dataset(tmp_path / "a") == [Item(tmp_path / "a/fake/sub/2.png", 1), Item(tmp_path / "a/real/1.mp4", 0)]
    assert [i.label for i in load_dataset(tmp_path / "ff")] == [1, 0]
    (tmp_path / "list.csv").write_text("path,label\na/real/1.mp4,real\n/abs/x.jpg,1\n")
    assert load_dataset(tmp_path / "list.csv") == [Item(Path("/abs/x.jpg"), 1), Item(tmp_path / "a/real/1.mp4", 0)]
    (tmp_path / "noted.csv").write_text("path,label,source\na/real/1.mp4,real,an original, with a comma\n")
    assert load_dataset(tmp_path / "noted.csv") == [Item(tmp_path / "a/real/1.mp4", 0)]  # the development set's form
    (tmp_path / "bad.csv").write_text("a.mp4,maybe\n")
    with pytest.raises(ConfigError, match=r"bad.csv:1: expected path,label"):
        load_dataset(tmp_path / "bad.csv")
    with pytest.raises(ConfigError, match="expected real/ and fake/"):
        load_dataset(tmp_path)


def test_detector_specs(weights_dir):
    assert parse_detector_spec("meso4_df").type == "meso4" and parse_detector_spec("meso4_df").weights == "meso4_df"
    spec = parse_detector_spec(f"mesoinception4={weights_dir / 'MesoInception_F2F.h5'}")
    assert (spec.name, spec.type, spec.weights) == (
        "mesoinception4",
        "mesoinception4",
        str(weights_dir / "MesoInception_F2F.h5"),
    )
    with pytest.raises(ConfigError, match="not a manifest name or a detector type"):
        parse_detector_spec("xception9")


# ---- the commands -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    root = make_labelled_set(tmp_path_factory.mktemp("synthetic"), per_class=3, frames=8)
    (root / "fake" / "broken.mp4").write_bytes(b"\x00" * 1000)  # one bad file among the good ones
    return root


@pytest.mark.weights
def test_eval_reports_every_model_and_the_fusion(weights_dir, synthetic_set, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DFSTREAM_MODEL_PATH", str(weights_dir))
    outputs = []
    for run in ("first", "second"):
        out = tmp_path / run
        assert (
            main(
                [
                    "eval",
                    str(synthetic_set),
                    "--detectors",
                    "meso4_df",
                    "mesoinception4_df",
                    "--frames",
                    "6",
                    "--out",
                    str(out),
                    "--device",
                    "cpu",
                ]
            )
            == 0
        )
        outputs.append(
            {
                name: (out / name).read_bytes()
                for name in ("report.json", "frame_scores.csv", "roc_frame.png", "roc_video.png")
            }
        )
    printed = capsys.readouterr()
    assert outputs[0] == outputs[1]  # deterministic to the byte
    report = json.loads(outputs[0]["report.json"])
    assert report["items"] == 7 and report["items_scored"] == 6 and report["frames_scored"] == 36
    assert [s["path"].rsplit("/", 1)[-1] for s in report["skipped"]] == ["broken.mp4"] and "broken.mp4" in printed.err
    for name in ("meso4_df", "mesoinception4_df", "fused"):
        model = report["models"][name]
        assert model["frame"]["n"] == 36 and model["frame"]["fakes"] == 18 and 0 <= model["frame"]["auc"] <= 1
        assert set(model["video"]) == {"mean", "confident", "majority"} and model["video"]["mean"]["n"] == 6
    assert outputs[0]["roc_frame.png"].startswith(b"\x89PNG") and "fused" in printed.out


@pytest.mark.weights
def test_calibrate_writes_what_the_ensemble_reads(weights_dir, synthetic_set, tmp_path, capsys, monkeypatch):
    from pipeline.judging.calibration import load_calibrators

    monkeypatch.setenv("DFSTREAM_MODEL_PATH", str(weights_dir))
    calibration = tmp_path / "calibration.json"
    assert (
        main(
            [
                "calibrate",
                str(synthetic_set),
                "--detectors",
                "meso4_df",
                "--frames",
                "4",
                "--method",
                "temperature",
                "--out",
                str(calibration),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    fitted = load_calibrators(calibration)
    assert set(fitted) == {"meso4_df"} and fitted["meso4_df"].to_dict()["method"] == "temperature"
    assert "log loss" in capsys.readouterr().out
    assert (
        main(
            [
                "eval",
                str(synthetic_set),
                "--detectors",
                "meso4_df",
                "--frames",
                "4",
                "--calibration",
                str(calibration),
                "--out",
                str(tmp_path / "calibrated"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
