"""The report's HTML: static sections for plots and config, and a small script that draws the chosen step's samples."""

from __future__ import annotations

import html
import json

CSS = """
body { font-family: system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; }
header .meta { font-size: 12px; opacity: .8; margin-top: 4px; word-break: break-all; }
nav { padding: 8px 24px; background: #e9ecf1; font-size: 14px; }
nav a { margin-right: 16px; color: #1d4ed8; }
section { padding: 12px 24px; }
h2 { font-size: 17px; border-bottom: 1px solid #d0d5dd; padding-bottom: 4px; }
table.kv { border-collapse: collapse; font-size: 13px; }
table.kv td, table.kv th { border: 1px solid #d0d5dd; padding: 3px 8px; text-align: left; vertical-align: top; }
.plots img { max-width: 100%; background: #fff; border: 1px solid #d0d5dd; margin: 4px 0 12px; }
.plots figure { margin: 0; }
.picker { display: flex; gap: 8px; align-items: center; margin: 8px 0; font-size: 14px; flex-wrap: wrap; }
.picker button { padding: 2px 10px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(420px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid #d0d5dd; border-radius: 6px; padding: 10px; font-size: 13px; }
.card .imgs img { max-width: 100%; max-height: 260px; margin: 0 6px 6px 0; border: 1px solid #e3e6eb; }
.card pre { white-space: pre-wrap; word-break: break-word; background: #f3f4f6; padding: 6px; margin: 2px 0 8px;
            max-height: 220px; overflow: auto; font-size: 12px; }
.label { font-weight: 600; font-size: 12px; color: #4b5563; }
.score { font-weight: 700; }
.good { color: #047857; } .bad { color: #b91c1c; }
.note { color: #6b7280; font-size: 13px; }
.problems li { color: #92400e; font-size: 13px; }
pre.config { background: #fff; border: 1px solid #d0d5dd; padding: 8px; font-size: 12px; overflow: auto; }
"""

SCRIPT = """
(function () {
  var DATA = JSON.parse(document.getElementById("report-data").textContent);
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function show(value) {
    if (value === null || value === undefined) return "(none)";
    if (typeof value !== "string") return JSON.stringify(value);
    // control characters a tiny model emits, shown as escapes instead of invisible or garbled glyphs
    return value.replace(/[\\u0000-\\u0008\\u000b-\\u001f\\u007f]/g, function (c) {
      return "\\\\x" + ("0" + c.charCodeAt(0).toString(16)).slice(-2);
    });
  }
  function fmt(value) {
    return typeof value === "number" ? String(Math.round(value * 10000) / 10000) : show(value);
  }
  function card(s, i) {
    var c = el("div", "card");
    var head = el("div");
    var score = el("span", "score " + (typeof s.score === "number" ? (s.score > 0 ? "good" : "bad") : ""),
                   "score " + fmt(s.score));
    head.appendChild(score);
    head.appendChild(el("span", "note", "  #" + (i + 1) + (s.data_source ? " \\u00b7 " + s.data_source : "") +
                                          (s.row ? " \\u00b7 " + s.row : "")));
    c.appendChild(head);
    var imgs = el("div", "imgs");
    s.images.forEach(function (key, j) {
      var img = el("img");
      img.src = DATA.images[key];
      img.alt = "image " + (j + 1) + " of sample " + (i + 1);
      imgs.appendChild(img);
    });
    if (s.missing_images) imgs.appendChild(el("div", "note", s.missing_images + " image(s) could not be read"));
    if (s.images.length || s.missing_images) c.appendChild(imgs);
    [["prompt", s.input], ["response", s.output], ["ground truth", s.gts]].forEach(function (p) {
      c.appendChild(el("div", "label", p[0]));
      c.appendChild(el("pre", null, show(p[1])));
    });
    var keys = Object.keys(s.extras || {});
    c.appendChild(el("div", "label", "reward breakdown"));
    var t = el("table", "kv");
    var row = el("tr");
    row.appendChild(el("th", null, "score"));
    row.appendChild(el("td", null, fmt(s.score)));
    t.appendChild(row);
    keys.forEach(function (k) {
      var r = el("tr");
      r.appendChild(el("th", null, k));
      r.appendChild(el("td", null, fmt(s.extras[k])));
      t.appendChild(r);
    });
    c.appendChild(t);
    return c;
  }
  function setup(split) {
    var box = document.getElementById("samples-" + split);
    var info = DATA.splits[split];
    if (!box) return;
    if (!info.steps.length) {
      box.appendChild(el("p", "note", "No " + split + " samples: the run wrote no samples/" + split +
                                      "/<step>.jsonl."));
      return;
    }
    var picker = el("div", "picker");
    var prev = el("button", null, "\\u2190 earlier"), next = el("button", null, "later \\u2192");
    var select = el("select");
    select.id = "step-" + split;
    info.steps.forEach(function (step) {
      var st = info.stats[String(step)] || {};
      var mean = typeof st.mean_score === "number" ? ", mean score " + fmt(st.mean_score) : "";
      var o = el("option", null, "step " + step + " (" + st.n + " samples" + mean + ")");
      o.value = String(step);
      select.appendChild(o);
    });
    picker.appendChild(el("label", null, "step"));
    if (info.logged_steps > info.steps.length)
      picker.appendChild(el("span", "note", info.steps.length + " of " + info.logged_steps + " logged steps"));
    picker.appendChild(prev);
    picker.appendChild(select);
    picker.appendChild(next);
    var cards = el("div", "cards");
    box.appendChild(picker);
    box.appendChild(cards);
    function draw() {
      cards.textContent = "";
      (info.samples[select.value] || []).forEach(function (s, i) { cards.appendChild(card(s, i)); });
      prev.disabled = select.selectedIndex === 0;
      next.disabled = select.selectedIndex === info.steps.length - 1;
    }
    select.addEventListener("change", draw);
    prev.addEventListener("click", function () { select.selectedIndex -= 1; draw(); });
    next.addEventListener("click", function () { select.selectedIndex += 1; draw(); });
    select.selectedIndex = info.steps.length - 1;
    draw();
  }
  Object.keys(DATA.splits).forEach(setup);
})();
"""


def _json_for_script(data) -> str:
    """JSON that cannot end its <script> element early."""
    return json.dumps(data, ensure_ascii=False, default=str).replace("</", "<\\/").replace("<!--", "<\\!--")


def render_page(*, title: str, run_dir: str, generated: str, summary, n_steps: int, plots, config, data,
                problems) -> str:
    e = html.escape
    parts = [f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{title}</title>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             "<link rel='icon' href='data:,'>",  # no favicon request: the page needs nothing beside itself
             f"<style>{CSS}</style></head><body>",
             (f"<header><h1>{title}</h1><div class='meta'>{e(run_dir)} \u00b7 {n_steps} logged steps \u00b7 "
              f"report written {e(generated)}</div></header>"),
             ("<nav><a href='#summary'>summary</a><a href='#plots'>plots</a><a href='#val'>validation samples</a>"
              "<a href='#train'>training samples</a><a href='#config'>config</a></nav>")]
    parts.append("<section id='summary'><h2>Summary (latest value of each metric)</h2>")
    if summary:
        parts.append("<table class='kv'><tr><th>metric</th><th>value</th><th>step</th></tr>" + "".join(
            f"<tr><td>{e(k)}</td><td>{e(v)}</td><td>{s}</td></tr>" for k, v, s in summary) + "</table>")
    else:
        parts.append("<p class='note'>No metrics.jsonl (train with trainer.logger including jsonl).</p>")
    if problems:
        parts.append("<p class='note'>Skipped while writing this report:</p><ul class='problems'>"
                     + "".join(f"<li>{e(p)}</li>" for p in problems[:50]) + "</ul>")
    parts.append("</section><section id='plots' class='plots'><h2>Plots</h2>")
    figures = [f"<figure><img src='{uri}' alt='{e(name)}'><figcaption class='note'>{e(name)}</figcaption></figure>"
               for name, uri in plots]
    if not figures:
        parts.append("<p class='note'>No plots.</p>")
    elif plots[0][0] == "overview" and len(figures) > 1:  # the overview holds every panel: the rest on demand
        parts += [figures[0], "<details><summary>each panel on its own</summary>", *figures[1:], "</details>"]
    else:
        parts += figures
    parts.append("</section>")
    for split, name in (("val", "Validation samples"), ("train", "Training samples")):
        parts.append(f"<section id='{split}'><h2>{name}</h2><div id='samples-{split}'></div></section>")
    parts.append("<section id='config'><h2>Config</h2>")
    parts.append(f"<details><summary>config.yaml (resolved)</summary><pre class='config'>{e(config)}</pre></details>"
                 if config is not None else "<p class='note'>No config.yaml in the run folder.</p>")
    parts.append("</section>")
    parts.append(f"<script type='application/json' id='report-data'>{_json_for_script(data)}</script>")
    parts.append(f"<script>{SCRIPT}</script></body></html>\n")
    return "\n".join(parts)
