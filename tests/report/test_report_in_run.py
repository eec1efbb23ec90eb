"""A training run ends with its report: the CPU default's samples, images and plots in report.html, as chromium shows it."""

import pytest

from tests.report.browser import find_chromium, open_page
from tests.report.test_report import CHROMIUM_MISSING, IMAGES, page_data
from tests.trainer.helpers import SHORT, compose_config
from verlvl.main_ppo import run_ppo

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_a_run_writes_its_report_with_samples_and_images(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv("VERLVL_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    run_ppo(compose_config(*SHORT, "trainer.total_training_steps=2", "trainer.test_freq=2",
                           f"trainer.default_local_dir={run_dir}"))
    report = run_dir / "report.html"
    html = report.read_text()
    data = page_data(html)
    assert data["splits"]["train"]["steps"] == [1, 2] and 2 in data["splits"]["val"]["steps"]
    for split, step in (("train", "2"), ("val", "2")):
        shown = data["splits"][split]["samples"][step]
        assert len(shown) == 4 and len({s["row"] for s in shown}) == 4  # the prompts share their text
        assert all(len(s["images"]) == 1 and isinstance(s["gts"], str) and s["missing_images"] == 0 for s in shown)
    assert "critic/score/mean" in html and "<img src='data:image/png;base64," in html
    if (run_dir / "config.yaml").exists():
        assert "default_local_dir" in html
    if find_chromium() is None:
        pytest.skip(CHROMIUM_MISSING)
    result = open_page(report, [("images", IMAGES)])
    assert result.errors == []
    assert len(result.values["images"]) > 2 and all(c and w > 0 for _, c, w, _ in result.values["images"])
