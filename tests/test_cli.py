"""The command line as a user runs it: real subprocesses, real files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def crossview(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crossview.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_sample_then_eval_mot_writes_json(tmp_path: Path) -> None:
    made = crossview("sample", "mot", str(tmp_path), "--sequences", "2")
    assert made.returncode == 0, made.stderr
    out = tmp_path / "scores.json"
    run = crossview(
        "eval", "mot", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"), "--json", str(out)
    )
    assert run.returncode == 0, run.stderr
    assert "COMBINED" in run.stdout
    scores = json.loads(out.read_text())
    assert set(scores["sequences"]) == {"SYN-01", "SYN-02"}
    combined = scores["combined"]
    for field in ("HOTA", "DetA", "AssA", "MOTA", "IDF1"):
        assert 0 < combined[field] < 1
    for field in ("IDSW", "CLR_FP", "CLR_FN", "IDTP"):
        assert isinstance(combined[field], int)
    assert combined["CLR_TP"] == sum(s["CLR_TP"] for s in scores["sequences"].values())


def test_eval_mot_reports_missing_sequence_by_name(tmp_path: Path) -> None:
    crossview("sample", "mot", str(tmp_path), "--sequences", "2")
    (tmp_path / "pred" / "SYN-02.txt").unlink()
    run = crossview("eval", "mot", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred"))
    assert run.returncode == 2
    assert "SYN-02" in run.stderr and "Traceback" not in run.stderr


def test_eval_mot_on_shared_mpntrack(tmp_path: Path) -> None:
    from tests.conftest import shared_path

    root = shared_path("data", "mot17")
    out = tmp_path / "mpn.json"
    run = crossview(
        "eval",
        "mot",
        "--gt",
        str(root),
        "--pred",
        str(root / "mpntrack"),
        "--pred-name",
        "{seq}-FRCNN",
        "--json",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    combined = json.loads(out.read_text())["combined"]
    assert combined["HOTA"] == pytest.approx(0.610147, abs=1e-6)
    assert combined["MOTA"] == pytest.approx(0.605869, abs=1e-6)
    assert combined["IDF1"] == pytest.approx(0.697439, abs=1e-6)


def test_eval_mtmc_scores_global_identities(tmp_path: Path) -> None:
    gt = tmp_path / "gt.txt"
    pred = tmp_path / "pred.txt"
    # One person seen by two cameras; the prediction gives it a different global id in camera 2.
    rows = [f"{cam} 5 {f} 10 10 20 40 {f * 0.1} 0" for cam in (1, 2) for f in range(1, 11)]
    gt.write_text("\n".join(rows) + "\n")
    pred.write_text("\n".join(r if r.startswith("1 ") else r.replace(" 5 ", " 9 ", 1) for r in rows) + "\n")
    out = tmp_path / "m.json"
    run = crossview("eval", "mtmc", "--gt", str(gt), "--pred", str(pred), "--json", str(out))
    assert run.returncode == 0, run.stderr
    scores = json.loads(out.read_text())
    assert scores["mtmc_idf1"] == pytest.approx(0.5)
    assert scores["per_camera"]["2"]["IDF1"] == 1.0
    assert scores["loc_median"] == pytest.approx(0.0)
    bad = tmp_path / "bad.txt"
    bad.write_text("1 5 1 10 10 20\n")
    run = crossview("eval", "mtmc", "--gt", str(bad), "--pred", str(pred))
    assert run.returncode == 2 and "bad.txt:1" in run.stderr


def test_eval_coco_prints_and_writes_json(tmp_path: Path) -> None:
    gt = {
        "images": [{"id": 1, "width": 100, "height": 100}, {"id": 2, "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 60], "area": 2400, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 3, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0},
        ],
    }
    # The person is found exactly; the car is missed and a false car appears in image 1.
    pred = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 60], "score": 0.9},
        {"image_id": 1, "category_id": 3, "bbox": [60, 60, 30, 30], "score": 0.8},
    ]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    out = tmp_path / "coco.json"
    run = crossview(
        "eval",
        "coco",
        "--gt",
        str(tmp_path / "gt.json"),
        "--pred",
        str(tmp_path / "pred.json"),
        "--json",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    assert "person" in run.stdout and "car" in run.stdout
    figures = json.loads(out.read_text())
    assert figures["per_class"] == {"1": pytest.approx(1.0), "3": pytest.approx(0.0)}
    assert figures["AP"] == pytest.approx(0.5)
    (tmp_path / "broken.json").write_text("[{")
    run = crossview(
        "eval", "coco", "--gt", str(tmp_path / "gt.json"), "--pred", str(tmp_path / "broken.json")
    )
    assert run.returncode == 2 and "broken.json" in run.stderr and "Traceback" not in run.stderr
