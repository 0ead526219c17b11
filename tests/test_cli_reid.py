"""``crossview eval reid`` on a real subset of Market-1501 with the real OSNet model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import shared_path
from tests.test_cli import crossview


def subset(tmp_path: Path, people: int = 40) -> Path:
    manifest = shared_path("data", "market1501", "manifest.csv")
    lines = manifest.read_text().splitlines()
    header, rows = lines[0], lines[1:]
    pids = sorted({row.split(",")[1] for row in rows if row.endswith(",query")})[:people]
    chosen = [row for row in rows if row.split(",")[1] in pids]
    root = manifest.parent
    out = tmp_path / "manifest.csv"
    out.write_text(
        "\n".join([header, *(f"{root / r.split(',', 1)[0]},{r.split(',', 1)[1]}" for r in chosen)])
    )
    return out


@pytest.mark.parametrize("rerank", ["none", "kreciprocal"])
def test_eval_reid_reports_cmc_and_map(tmp_path: Path, rerank: str) -> None:
    manifest = subset(tmp_path)
    model = shared_path("models", "osnet_x0_25_msmt17.onnx")
    out = tmp_path / "reid.json"
    run = crossview(
        "eval",
        "reid",
        "--manifest",
        str(manifest),
        "--model",
        str(model),
        "--rerank",
        rerank,
        "--json",
        str(out),
    )
    assert run.returncode == 0, run.stderr
    figures = json.loads(out.read_text())
    assert set(figures) == {"rank1", "rank5", "rank10", "mAP", "mINP", "seconds"}
    assert figures["rank1"] <= figures["rank5"] <= figures["rank10"] <= 1.0
    # 40 identities, a few hundred gallery crops: OSNet x0.25 finds most at rank 1.
    assert figures["rank1"] > 0.7 and figures["mAP"] > 0.5


def test_eval_reid_names_a_broken_manifest(tmp_path: Path) -> None:
    bad = tmp_path / "manifest.csv"
    bad.write_text("path,pid,camid,role\nimages/a.jpg,1,1,probe\n")
    run = crossview("eval", "reid", "--manifest", str(bad), "--model", "color")
    assert run.returncode == 2 and "manifest.csv:2" in run.stderr and "Traceback" not in run.stderr
