"""The run report: one self-contained page with plots, config and samples, checked in headless chromium."""

import base64
import io
import json
import re
import subprocess
import sys

import pytest
from PIL import Image

from tests.report.browser import find_chromium, open_page
from tests.report.rundir import make_run_dir
from verlvl.report import write_report

CHROMIUM_MISSING = ("Debian's chromium is not installed (scripts/setup_chromium.sh installs it with apt-get when run "
                    "as root or with passwordless sudo; `apt-get install chromium`)")


def page_data(html: str) -> dict:
    raw = re.search(r"<script type='application/json' id='report-data'>(.*?)</script>", html, re.S).group(1)
    return json.loads(raw.replace("<\\/", "</"))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    run_dir = make_run_dir(tmp_path_factory.mktemp("run") / "run")
    return write_report(run_dir)


def test_one_self_contained_page_with_plots_config_and_samples(report):
    html = report.read_text()
    assert report == report.parent / "report.html"
    # nothing beside the file: every src is inline, every href an anchor or inline
    assert all(v.startswith("data:") for v in re.findall(r"src='([^']*)'", html))
    assert all(v.startswith(("#", "data:")) for v in re.findall(r"href='([^']*)'", html))
    assert "http://" not in html and "https://" not in html
    assert html.count("<img src='data:image/png;base64,") == 4  # overview + 3 panels
    assert "train_files: builtin://shapes/train.parquet" in html and "val-core/shapes/acc/mean@4" in html
    data = page_data(html)
    val, train = data["splits"]["val"], data["splits"]["train"]
    assert val["steps"] == [2, 4] and train["steps"] == [1, 2, 3, 4]
    assert val["stats"]["4"] == {"n": 7, "mean_score": pytest.approx((3 + 0.5) / 7)}
    shown = val["samples"]["4"]
    assert len(shown) == 4 and len({s["input"] for s in shown}) == 4  # distinct prompts, spread over the step
    pair = next(s for s in shown if s["data_source"] == "pairs")
    assert pair["output"] == "</script><b>bold?</b> & <img src=x onerror=alert(1)>" and len(pair["images"]) == 2
    red = next(s for s in shown if s["gts"] == "red")
    assert red["extras"] == {"acc": red["score"], "format": 1.0} and red["row"] == "test.parquet row 0"
    # 4 distinct pictures in both splits: each inlined once
    assert len(data["images"]) == 4
    assert {s["images"][0] for s in shown if s["gts"] == "red"} == {pair["images"][0]}


def test_damaged_dumps_are_skipped_and_named(tmp_path):
    run_dir = make_run_dir(tmp_path / "run", steps=2)
    with open(run_dir / "samples" / "val" / "2.jsonl", "a") as f:
        f.write('{"step": 2, "input": "cut off by a crash\n')
        f.write(json.dumps({"step": 2, "input": "q", "output": "a", "score": 1, "images": ["images/gone.png"]}) + "\n")
    (run_dir / "samples" / "val" / "notes.jsonl").write_text("{}\n")
    html = write_report(run_dir, samples_per_step=20).read_text()
    assert f"{run_dir / 'samples' / 'val' / '2.jsonl'} line 8: not JSON" in html
    assert "notes.jsonl: the name is not &lt;step&gt;.jsonl" in html and "gone.png cannot be read" in html
    last = page_data(html)["splits"]["val"]["samples"]["2"][-1]
    assert last["input"] == "q" and last["images"] == [] and last["missing_images"] == 1


def test_long_runs_show_a_spread_of_steps_and_photos_as_jpeg(tmp_path):
    import numpy as np

    run_dir = make_run_dir(tmp_path / "run", steps=4)
    photo = np.random.default_rng(0).integers(0, 255, (600, 500, 3), dtype=np.uint8)
    Image.fromarray(photo).save(run_dir / "samples" / "val" / "images" / "photo.png")
    with open(run_dir / "samples" / "val" / "4.jsonl", "a") as f:
        f.write(json.dumps({"step": 4, "input": "a photo", "output": "noise", "score": 0.0,
                            "images": ["images/photo.png"]}) + "\n")
    data = page_data(write_report(run_dir, samples_per_step=10, max_steps=2).read_text())
    train = data["splits"]["train"]
    assert train["steps"] == [1, 4] and train["logged_steps"] == 4 and sorted(train["samples"]) == ["1", "4"]
    key = data["splits"]["val"]["samples"]["4"][-1]["images"][0]
    uri = data["images"][key]
    assert uri.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as shown:
        assert shown.size == (320, 384)  # the longest side brought to 384


def test_not_a_run_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"has none of metrics.jsonl, plots/, config.yaml, samples/"):
        write_report(tmp_path)
    with pytest.raises(ValueError, match=r"nowhere is not a folder"):
        write_report(tmp_path / "nowhere")


def test_command_line(tmp_path):
    run_dir = make_run_dir(tmp_path / "run", steps=2)
    done = subprocess.run([sys.executable, "-m", "verlvl.report", str(run_dir), "--out", str(tmp_path / "r.html")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "r.html") and (tmp_path / "r.html").stat().st_size > 10_000
    bad = subprocess.run([sys.executable, "-m", "verlvl.report", str(tmp_path / "none")], capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and "is not a folder" in bad.stderr and "Traceback" not in bad.stderr


IMAGES = "Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight])"
CARDS = ("Array.from(document.querySelectorAll('#samples-{split} .card')).map(c => "
         "[c.querySelectorAll('img').length, c.innerText])")
PICK_STEP_2 = """(async () => {
  const s = document.getElementById('step-val');
  s.value = '2'; s.dispatchEvent(new Event('change'));
  await Promise.all(Array.from(document.images).map(i => i.decode()));
  return true;
})()"""


@pytest.mark.skipif(find_chromium() is None, reason=CHROMIUM_MISSING)
def test_opens_in_headless_chromium_with_its_images_and_no_errors(report):
    result = open_page(report, [
        ("images", IMAGES), ("val_cards", CARDS.format(split="val")), ("train_cards", CARDS.format(split="train")),
        ("selected", "document.getElementById('step-val').value"), ("pick", PICK_STEP_2),
        ("images_after", IMAGES), ("val_cards_after", CARDS.format(split="val")),
        ("injected", "document.querySelectorAll('#samples-val b, #samples-val img[src=\"x\"]').length"),
    ])
    assert result.errors == []
    images = result.values["images"]
    assert len(images) == 4 + 5 + 5  # the plots, then 4 cards per split with 5 images between them
    assert all(complete and width > 0 and height > 0 for _, complete, width, height in images), images
    assert sorted({(w, h) for alt, _, w, h in images if alt.startswith("image")}) == [(40, 80), (56, 56)]
    assert result.values["selected"] == "4"  # the latest step first
    cards = result.values["val_cards"]
    assert len(cards) == 4 and [n for n, _ in cards] == [1, 1, 1, 2]
    text = cards[0][1]
    for part in ("score", "prompt", "What colour is this?", "response", "ground truth", "reward breakdown", "acc",
                 "format"):
        assert part in text
    assert "</script><b>bold?</b>" in cards[3][1]  # the response as text, never as markup
    assert "response\npurple\\x06\n" in text  # a control character shown as its escape
    assert result.values["injected"] == 0
    assert len(result.values["train_cards"]) == 4
    after = result.values["val_cards_after"]
    assert after != cards and all(w > 0 for _, _, w, _ in result.values["images_after"])
    shot_path = report.parent / "report_screenshot.png"
    shot_path.write_bytes(result.screenshot)
    with Image.open(shot_path) as shot:
        assert shot.format == "PNG" and shot.width > 1300 and shot.height > 2000
        # the red sample image is on screen: some pure-ish red pixels
        import numpy as np

        rgb = np.asarray(shot.convert("RGB")).reshape(-1, 3).astype(int)
        assert ((rgb[:, 0] > 200) & (rgb[:, 1] < 60) & (rgb[:, 2] < 60)).sum() > 56 * 56
