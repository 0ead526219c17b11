"""``crossview demo`` end to end on a short site: real rendering, detection, tracking, association."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from crossview.cli import app
from crossview.demo import DemoConfig, run_demo
from crossview.io.formats.mtmc import read_mtmc


@pytest.fixture(scope="module")
def short_demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("demo")
    result = CliRunner().invoke(
        app, ["demo", "--out", str(out), "--seconds", "20", "--json", str(out / "figures.json")]
    )
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "figures.json").read_text())


def test_demo_figures_are_real_and_written(short_demo: tuple[Path, dict[str, object]]) -> None:
    out, figures = short_demo
    for key in ("mtmc_idf1", "localization_error_median_m", "session_match_top1", "latency_p99_ms"):
        assert key in figures
    # vehicles entering through the gate are followed into the rows: most boxes carry the right identity
    assert 0.5 < float(figures["mtmc_idf1"]) <= 1.0  # type: ignore[arg-type]
    assert 0.5 < float(figures["mtmc_idf1_offline"]) <= 1.0  # type: ignore[arg-type]
    assert float(figures["localization_error_median_m"]) < 1.0  # type: ignore[arg-type]
    assert 0 < float(figures["latency_p99_ms"]) < 10_000  # type: ignore[arg-type]
    per_camera = figures["per_camera"]
    assert isinstance(per_camera, dict) and sorted(per_camera) == ["c1", "c2", "c3", "c4"]
    assert per_camera["c1"]["IDF1"] > 0.8  # the gate camera sees one vehicle at a time
    predictions = read_mtmc(out / "pred" / "mtmc.txt")
    assert set(predictions.cameras()) <= {"c1", "c2", "c3", "c4"}
    assert json.loads((out / "results.json").read_text())["mtmc_idf1"] == figures["mtmc_idf1"]
    page = (out / "report.html").read_text()
    assert "Per camera" in page and "report/site_map.png" in page
    assert (out / "report" / "site_map.png").stat().st_size > 0


def test_a_silent_camera_is_reported(tmp_path: Path) -> None:
    result = run_demo(tmp_path, DemoConfig(seconds=40, scenario="camera_outage"))
    silent = [w for w in result.warnings if "went silent" in w]
    back = [w for w in result.warnings if "is back" in w]
    assert len(silent) == 1 and len(back) == 1
    outage = json.loads((tmp_path / "site" / "site.json").read_text())["outages"][0]
    assert silent[0].startswith(
        f"camera {outage['camera']} went silent (blank frames) at {outage['start_time']:.1f} s"
    )
    assert not math.isnan(result.figures["mtmc_idf1"])


def test_unknown_scenario_is_refused() -> None:
    result = CliRunner().invoke(app, ["demo", "--scenario", "rainy"])
    assert result.exit_code == 2
    assert "unknown scenario 'rainy'" in result.output
