"""`python -m verlvl.plot RUN_DIR` turns metrics.jsonl into PNGs."""

import json

from verlvl.plot import load_metrics, main


def test_plot_writes_pngs_and_prefers_the_resumed_rows(tmp_path, capsys):
    rows = [{"step": s, "critic/score/mean": s / 10, "response_length/mean": 2.0, "actor/entropy": 3.0,
             "timing_s/gen": 0.1, "timing_s/update_actor": 0.3} for s in range(1, 6)]
    rows.append({"step": 3, "critic/score/mean": 0.99})  # a resumed run re-logged step 3
    rows.append({"step": 5, "val-core/verlvl/shapes/reward/mean@1": 1.0})
    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert load_metrics(tmp_path)[2]["critic/score/mean"] == 0.99
    main([str(tmp_path)])
    printed = capsys.readouterr().out.split()
    names = {p.rsplit("/", 1)[-1] for p in printed}
    assert {"reward.png", "response_length.png", "entropy.png", "time_per_phase.png", "overview.png"} <= names
    assert all((tmp_path / "plots" / n).stat().st_size > 1000 for n in names)
