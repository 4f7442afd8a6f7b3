"""The HTML run report (``run --html PATH``, ``runbook report MANIFEST --html PATH``).

One self-contained file: its CSS and script are inline, it fetches nothing (a Content Security
Policy forbids any fetch, so it works the same from ``file://``), and the run is embedded as
JSON that the script renders. It shows the run's header (status, runbook, git commit,
duration), the errors with their ``FILE:LINE``, and a timeline of the steps and ``for_each``
items with their attempts and the retry waits between them, drawn to scale; every status is
shown by colour and by text. A step's request, output, exports and logs are folded and only
rendered when unfolded.

It stays usable for thousands of steps and items: a step is one light row; a ``for_each``
step's items are rendered only when its list is opened, and then only those scrolled into
view; details exist in the page only while they are open.

It reads only the manifest's records, whose requests, outputs and errors are already
redacted by taint and scrubbed of known secret values: nothing here sees a raw value.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from engine.report import Manifest
from engine.report.positions import line_of, step_lines

__all__ = ["html_report", "report_data", "write"]

Record = dict[str, Any]

#: A request, output, exports or logs longer than this (as JSON) is embedded clipped.
FOLDED_LIMIT = 64 * 1024


def write(path: str, manifest: Manifest, manifest_path: str | None) -> None:
    """Replace ``path`` with the report (its folder created)."""
    from engine.files import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, html_report(manifest, manifest_path).encode("utf-8", "backslashreplace"))


def _ms(stamp: Any) -> float | None:
    """Milliseconds since the epoch of an RFC 3339 stamp; None if it is not one."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000
    except ValueError:
        return None


def _folded(value: Any) -> Any:
    """A recorded value as embedded: itself, or its JSON clipped when it is very long."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = json.dumps(value, ensure_ascii=False, default=str, indent=2)
    if len(text) <= FOLDED_LIMIT:
        return value
    return {"__clipped__": text[:FOLDED_LIMIT], "more": len(text) - FOLDED_LIMIT}


class _Timeline:
    """Offsets from the run's start, in milliseconds."""

    def __init__(self, t0: float | None) -> None:
        self.t0 = t0

    def offset(self, stamp: Any) -> int | None:
        at = _ms(stamp)
        return None if at is None or self.t0 is None else max(0, round(at - self.t0))

    def attempts(self, record: Record) -> list[list[Any]]:
        """``[offset, duration, http status, error]`` per attempt."""
        return [[self.offset(a.get("started_at")), a.get("duration_ms") or 0, a.get("http_status"), a.get("error")]
                for a in record.get("attempts") or []]


def _outcome(record: Record, timeline: _Timeline) -> Record:
    """What a step and an item share: status, times, attempts, error, run id, the folded values."""
    data: Record = {
        "status": record["status"],
        "s": timeline.offset(record.get("started_at")),
        "d": record.get("duration_ms") or 0,
        "att": timeline.attempts(record),
        "err": record.get("error"),
        "run_id": record.get("run_id"),
    }
    if record.get("reused_from"):
        data["reused"] = record["reused_from"]
    for key, short in (("request", "req"), ("output", "out"), ("exports", "exp"), ("logs", "logs")):
        value = record.get(key)
        if value not in (None, {}, []):
            data[short] = _folded(value)
    return data


def report_data(manifest: Manifest, manifest_path: str | None = None) -> Record:
    """The run as the page's script reads it (offsets in milliseconds from the run's start)."""
    run, runbook = manifest["run"], manifest["runbook"]
    t0 = _ms(run.get("started_at"))
    timeline = _Timeline(t0)
    lines = step_lines(manifest)
    steps: list[Record] = []
    end = 0
    for record in manifest.get("steps") or []:
        step: Record = {"id": record["id"], "name": record.get("name"), "section": record.get("section", "steps"),
                        "provider": record.get("provider"), "ptype": record.get("provider_type"),
                        "dispatch": record.get("dispatch"), "line": line_of(lines, record),
                        **_outcome(record, timeline)}
        if record.get("items") is not None:
            step["items"] = [{"i": item.get("index", n), **_outcome(item, timeline)}
                             for n, item in enumerate(record["items"])]
        for item in [step, *step.get("items", ())]:
            if item["s"] is not None:
                end = max(end, item["s"] + item["d"])
            for attempt in item["att"]:
                if attempt[0] is not None:
                    end = max(end, attempt[0] + attempt[1])
        steps.append(step)
    total = max(run.get("duration_ms") or 0, end, 1)
    return {
        "run": {k: run.get(k) for k in ("id", "status", "started_at", "finished_at", "duration_ms", "resumed_from",
                                        "replay_of", "emulated", "error")},
        "runbook": {k: runbook.get(k) for k in ("name", "path", "sha256", "git")},
        "engine": (manifest.get("engine") or {}).get("version"),
        "manifest": manifest_path,
        "total": total,
        "steps": steps,
        "outputs": _folded(manifest.get("outputs") or {}),
    }


def _embedded(data: Record) -> str:
    """JSON that can stand inside a ``<script>`` element: no ``<`` (so no ``</script>``)."""
    text = json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def html_report(manifest: Manifest, manifest_path: str | None = None) -> str:
    """The report's whole page."""
    data = report_data(manifest, manifest_path)
    title = f"runbook {data['runbook'].get('name') or ''}: {data['run'].get('status') or ''}"
    # pieces joined, not placeholders replaced: no text of the run is ever read as a placeholder
    head, rest = _PAGE.split("@TITLE@")
    before_css, rest = rest.split("@CSS@")
    before_data, rest = rest.split("@DATA@")
    before_script, tail = rest.split("@SCRIPT@")
    return "".join([head, _escape(title), before_css, _CSS, before_data, _embedded(data), before_script,
                    _SCRIPT, tail])


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; \
script-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">
<meta name="referrer" content="no-referrer">
<title>@TITLE@</title>
<style>@CSS@</style>
</head>
<body>
<noscript><p class="noscript">This report draws the run with its inline script: allow scripts for this file
to see it. The run's data is in the script element below, as JSON.</p></noscript>
<header id="head"></header>
<section id="errors" aria-label="errors"></section>
<section id="timeline" aria-label="timeline of the steps"></section>
<section id="outputs" aria-label="outputs"></section>
<script type="application/json" id="runbook-data">@DATA@</script>
<script>@SCRIPT@</script>
</body>
</html>
"""

_CSS = r"""
:root { --ok:#1a7f37; --fail:#cf222e; --skip:#6e7781; --notrun:#8c959f; --int:#bc4c00; --run:#0969da;
  --wait:#d4a72c; --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#ffffff; --soft:#f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--fg);
  background: var(--bg); }
header, section { padding: 12px 20px; }
h1 { font-size: 20px; margin: 0 0 6px; display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
h2 { font-size: 15px; margin: 14px 0 6px; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.facts { display: flex; flex-wrap: wrap; gap: 4px 18px; color: var(--muted); margin: 0; padding: 0; list-style: none; }
.facts b { color: var(--fg); font-weight: 600; }
.badge { display: inline-flex; align-items: center; gap: 4px; padding: 1px 8px; border-radius: 10px; color: #fff;
  font-size: 12px; font-weight: 600; white-space: nowrap; }
.st-succeeded { --c: var(--ok); } .st-failed { --c: var(--fail); } .st-skipped { --c: var(--skip); }
.st-not_run { --c: var(--notrun); } .st-interrupted { --c: var(--int); } .st-running { --c: var(--run); }
.st-invalid { --c: var(--fail); }
.badge { background: var(--c, var(--skip)); }
.counts { display: flex; gap: 8px; flex-wrap: wrap; margin-top: 8px; }
.legend { display: flex; gap: 14px; flex-wrap: wrap; color: var(--muted); font-size: 12px; margin: 6px 0; }
.legend i { display: inline-block; width: 22px; height: 10px; vertical-align: middle; margin-right: 4px;
  border-radius: 2px; }
.errlist { margin: 0; padding-left: 18px; }
.errlist li { margin: 3px 0; }
.errlist a { color: var(--fail); }
.where { color: var(--muted); }
.grid { display: grid; grid-template-columns: 104px minmax(120px, 240px) 1fr 78px; align-items: center; }
.axis { position: sticky; top: 0; background: var(--bg); z-index: 2; border-bottom: 1px solid var(--line);
  color: var(--muted); font-size: 11px; height: 24px; }
.ticks { position: relative; height: 24px; }
.ticks span { position: absolute; top: 5px; transform: translateX(-50%); white-space: nowrap; }
.ticks span::before { content: ""; position: absolute; left: 50%; top: 14px; height: 5px;
  border-left: 1px solid var(--line); }
.sect { font-weight: 600; color: var(--muted); padding: 8px 0 2px; border-bottom: 1px solid var(--line); }
.row { min-height: 26px; border-bottom: 1px solid var(--soft); cursor: pointer; }
.row:hover, .row:focus { background: var(--soft); outline: none; }
.row:focus-visible { outline: 2px solid var(--run); outline-offset: -2px; }
.row > div { padding: 2px 6px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.lbl { font-size: 12px; font-weight: 600; color: var(--c); }
.sid { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
.sid small { color: var(--muted); font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
.dur { text-align: right; color: var(--muted); font-size: 12px; }
.track { position: relative; height: 16px; }
.track .span { position: absolute; top: 7px; height: 2px; background: var(--c); opacity: .45; }
.track .att { position: absolute; top: 2px; height: 12px; min-width: 2px; background: var(--c); border-radius: 2px; }
.track .att.bad { background: repeating-linear-gradient(135deg, var(--fail) 0 3px, #ffd8d3 3px 6px); }
.track .wait { position: absolute; top: 5px; height: 6px; min-width: 1px;
  background: repeating-linear-gradient(90deg, var(--wait) 0 2px, transparent 2px 4px); }
.track .mark { position: absolute; top: 1px; font-size: 11px; line-height: 14px; color: var(--c); }
.track canvas { position: absolute; left: 0; top: 0; width: 100%; height: 16px; }
.fold { color: var(--muted); font-size: 11px; margin-left: 4px; }
.details { grid-column: 1 / -1; margin: 4px 0 10px 104px; padding: 8px 12px; border-left: 3px solid var(--c);
  background: var(--soft); cursor: auto; white-space: normal; }
.details table, .item-details table { border-collapse: collapse; margin: 4px 0 8px; }
.details td, .details th, .item-details td, .item-details th { border: 1px solid var(--line); padding: 2px 8px;
  text-align: left; font-size: 12.5px; }
.details pre, .item-details pre { background: var(--bg); border: 1px solid var(--line); padding: 8px;
  max-height: 420px; overflow: auto;
  white-space: pre-wrap; word-break: break-word; margin: 4px 0; }
.details summary, .item-details summary { cursor: pointer; color: var(--run); }
.error { color: var(--fail); font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
  white-space: pre-wrap; word-break: break-word; }
.items { grid-column: 1 / -1; margin: 2px 0 10px 104px; border: 1px solid var(--line); border-radius: 4px; }
.items-bar { display: flex; gap: 12px; align-items: center; padding: 4px 8px; background: var(--soft);
  border-bottom: 1px solid var(--line); font-size: 12px; }
.vlist { position: relative; overflow: auto; }
.vrows { position: absolute; left: 0; right: 0; top: 0; }
.irow { height: 24px; display: grid; grid-template-columns: 112px 130px 1fr 70px; align-items: center;
  border-bottom: 1px solid var(--soft); cursor: pointer; font-size: 12px; }
.irow > div { padding: 0 6px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.irow:hover { background: var(--soft); }
.irow.sel { background: #ddf4ff; }
.ierr { color: var(--fail); }
.item-details { border-top: 1px solid var(--line); padding: 6px 10px; background: var(--bg); }
button.link { background: none; border: 0; color: var(--run); cursor: pointer; padding: 0; font: inherit; }
.noscript { padding: 20px; }
@media print { .axis { position: static; } }
"""

_SCRIPT = r"""
(function () {
  "use strict";
  var holder = document.getElementById("runbook-data");
  var D = JSON.parse(holder.textContent);
  holder.parentNode.removeChild(holder);  // the page keeps the data, not its text
  var TOTAL = Math.max(D.total || 1, 1);
  var ROW = 24, LIST_ROWS = 18;
  var STATUS = {
    succeeded: ["\u2713", "succeeded"], failed: ["\u2717", "failed"], skipped: ["\u21b7", "skipped"],
    not_run: ["\u2013", "not run"], interrupted: ["!", "interrupted"], running: ["\u2026", "running"],
    invalid: ["\u2717", "invalid"]
  };

  function esc(value) {
    return String(value == null ? "" : value).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"}[c];
    });
  }
  function dur(ms) {
    ms = ms || 0;
    if (ms < 1000) return Math.round(ms) + " ms";
    if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
    var m = Math.floor(ms / 60000);
    return m + " min " + Math.round((ms - m * 60000) / 1000) + " s";
  }
  function label(status) { return STATUS[status] || ["?", String(status)]; }
  function isFailure(rec) { return rec.status === "failed" || rec.status === "interrupted"; }
  function badge(status, text) {
    var l = label(status);
    return "<span class=\"badge st-" + esc(status) + "\">" + l[0] + " " + esc(text || l[1]) + "</span>";
  }
  function pct(x, base, len) { return (100 * (x - base) / len).toFixed(3) + "%"; }
  function width(x, len) { return (100 * x / len).toFixed(3) + "%"; }
  function errorLine(err, withLocation) {
    if (!err) return "";
    var where = withLocation && err.location ? err.location + ": " : "";
    var status = err.http_status ? " (HTTP " + err.http_status + ")" : "";
    return where + (err.type || "error") + status + ": " + (err.message || "");
  }
  function stepWhere(step) {
    return D.runbook.path && step.line ? D.runbook.path + ":" + step.line : "";
  }

  // the bars of one step or item: its span, each attempt, the waits between attempts
  function bars(rec, base, len) {
    var html = "";
    if (rec.s != null && rec.d > 0) {
      html += "<div class=\"span\" style=\"left:" + pct(rec.s, base, len) + ";width:" + width(rec.d, len) + "\"></div>";
    }
    var prevEnd = null;
    for (var i = 0; i < rec.att.length; i++) {
      var a = rec.att[i];
      if (a[0] == null) continue;
      if (prevEnd != null && a[0] > prevEnd) {
        html += "<div class=\"wait\" title=\"retry wait " + esc(dur(a[0] - prevEnd)) + "\" style=\"left:" +
          pct(prevEnd, base, len) + ";width:" + width(a[0] - prevEnd, len) + "\"></div>";
      }
      html += "<div class=\"att" + (a[3] ? " bad" : "") + "\" title=\"attempt " + (i + 1) + ": " +
        esc(dur(a[1])) + (a[2] ? ", HTTP " + a[2] : "") + (a[3] ? ", " + esc(a[3]) : "") + "\" style=\"left:" +
        pct(a[0], base, len) + ";width:" + width(a[1], len) + "\"></div>";
      prevEnd = a[0] + a[1];
    }
    if (!rec.att.length && rec.s != null && !(rec.d > 0)) {
      html += "<div class=\"mark\" style=\"left:" + pct(rec.s, base, len) + "\">" + label(rec.status)[0] + "</div>";
    }
    return html;
  }

  function counts(list) {
    var c = {}, order = [];
    for (var i = 0; i < list.length; i++) {
      var s = list[i].status;
      if (!(s in c)) { c[s] = 0; order.push(s); }
      c[s]++;
    }
    return order.map(function (s) { return [s, c[s]]; });
  }

  function renderHead() {
    var run = D.run, rb = D.runbook, git = rb.git || {};
    var facts = [];
    function fact(name, value) {
      if (value != null && value !== "") facts.push("<li>" + name + " <b>" + value + "</b></li>");
    }
    fact("run", esc(run.id || "not run"));
    fact("runbook", esc(rb.path || rb.name));
    fact("git commit", git.commit ? "<span class=\"mono\">" + esc(git.commit.slice(0, 12)) + "</span>" +
      (git.dirty ? " (file changed since)" : "") : (rb.git === null ? "not in git" : ""));
    fact("started", esc((run.started_at || "").replace("T", " ").replace("Z", " UTC")));
    fact("duration", esc(dur(run.duration_ms)));
    fact("steps", String(D.steps.length));
    if (run.resumed_from) fact("resumed from", esc(run.resumed_from));
    if (run.replay_of) fact("replay of", esc(run.replay_of));
    if (run.emulated) fact("emulated", "yes");
    if (D.manifest) fact("manifest", "<span class=\"mono\">" + esc(D.manifest) + "</span>");
    if (D.engine) fact("engine", "runbook " + esc(D.engine));
    var c = counts(D.steps).map(function (p) { return badge(p[0], p[1] + " " + label(p[0])[1]); }).join("");
    document.getElementById("head").innerHTML =
      "<h1>" + badge(run.status) + "<span>" + esc(rb.name) + "</span></h1>" +
      "<ul class=\"facts\">" + facts.join("") + "</ul>" +
      "<div class=\"counts\" aria-label=\"steps by status\">" + c + "</div>" +
      (run.error ? "<p class=\"error\">run error: " + esc(run.error) + "</p>" : "");
  }

  function renderErrors() {
    var out = [];
    D.steps.forEach(function (step, k) {
      if ((step.status === "failed" || step.status === "interrupted") && step.err) {
        var where = step.err.location || stepWhere(step);
        out.push("<li><a href=\"#step-" + k + "\" data-open=\"" + k + "\">" + esc(step.id) + "</a> " +
          esc(label(step.status)[1]) + (where ? " at <code class=\"where\">" + esc(where) + "</code>" : "") +
          ": <span class=\"error\">" + esc(errorLine(step.err, false)) + "</span></li>");
      }
    });
    var el = document.getElementById("errors");
    if (!out.length) { el.parentNode.removeChild(el); return; }
    var shown = out.slice(0, 200).join("");
    el.innerHTML = "<h2>Errors</h2><ul class=\"errlist\">" + shown + "</ul>" +
      (out.length > 200 ? "<p>and " + (out.length - 200) + " more (they are marked below)</p>" : "");
  }

  function axis() {
    var html = "";
    for (var i = 0; i <= 4; i++) {
      html += "<span style=\"left:" + (i * 25) + "%\">" + esc(dur(TOTAL * i / 4)) + "</span>";
    }
    return "<div class=\"grid axis\"><div>status</div><div>step</div><div class=\"ticks\">" + html +
      "</div><div class=\"dur\">duration</div></div>";
  }

  function stepRow(step, k) {
    var l = label(step.status);
    var extra = "";
    if (step.items) {
      var fails = step.items.filter(isFailure).length;
      extra = " <small>" + step.items.length + " item" + (step.items.length === 1 ? "" : "s") +
        (fails ? ", " + fails + " failed" : "") + "</small>";
    } else if (step.att.length > 1) {
      extra = " <small>" + step.att.length + " attempts</small>";
    }
    var name = step.name ? " <small>" + esc(step.name) + "</small>" : "";
    return "<div class=\"grid row st-" + esc(step.status) + "\" id=\"step-" + k + "\" data-k=\"" + k +
      "\" data-step=\"" + esc(step.id) + "\" tabindex=\"0\" role=\"button\" aria-expanded=\"false\">" +
      "<div class=\"lbl\">" + l[0] + " " + esc(l[1]) + "</div>" +
      "<div class=\"sid\" title=\"" + esc(step.id) + "\">" + esc(step.id) + name + extra + "</div>" +
      "<div class=\"track\">" + (step.items ? "<canvas data-k=\"" + k + "\"></canvas>" : "") +
      bars(step, 0, TOTAL) + "</div>" +
      "<div class=\"dur\">" + (step.status === "not_run" ? "" : esc(dur(step.d))) + "</div></div>";
  }

  var COLORS = null;
  function colours() {
    if (COLORS) return COLORS;
    var css = getComputedStyle(document.documentElement);
    COLORS = {succeeded: css.getPropertyValue("--ok"), failed: css.getPropertyValue("--fail"),
      skipped: css.getPropertyValue("--skip"), not_run: css.getPropertyValue("--notrun"),
      interrupted: css.getPropertyValue("--int"), running: css.getPropertyValue("--run")};
    return COLORS;
  }
  // every item of a fan-out in its step's row, on one canvas: no element per item
  function drawItems(canvas) {
    var step = D.steps[+canvas.getAttribute("data-k")];
    var w = canvas.clientWidth || 600, h = 16, ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * ratio); canvas.height = Math.round(h * ratio);
    var ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.scale(ratio, ratio);
    var col = colours();
    var order = ["succeeded", "skipped", "not_run", "running", "interrupted", "failed"];  // failures drawn last, on top
    order.forEach(function (status) {
      ctx.fillStyle = col[status] || "#888";
      step.items.forEach(function (it) {
        if (it.status !== status || it.s == null) return;
        var x = w * it.s / TOTAL, len = Math.max(w * it.d / TOTAL, 1);
        var lane = status === "failed" || status === "interrupted" ? 0 : 4;
        ctx.fillRect(x, lane + 2, len, status === "failed" || status === "interrupted" ? 12 : 8);
      });
    });
  }

  function renderTimeline() {
    var html = [axis()], section = null;
    D.steps.forEach(function (step, k) {
      if (step.section !== section) {
        section = step.section;
        html.push("<div class=\"sect\">" + (section === "finally" ? "finally" : "steps") + "</div>");
      }
      html.push(stepRow(step, k));
    });
    if (!D.steps.length) html.push("<p>No step ran.</p>");
    var el = document.getElementById("timeline");
    el.innerHTML = "<h2>Timeline</h2><div class=\"legend\">" +
      "<span><i style=\"background:var(--ok)\"></i>attempt</span>" +
      "<span><i style=\"background:repeating-linear-gradient(135deg,var(--fail) 0 3px,#ffd8d3 3px 6px)\">" +
      "</i>failed attempt</span>" +
      "<span><i style=\"background:repeating-linear-gradient(90deg,var(--wait) 0 2px,transparent 2px 4px)\">" +
      "</i>retry wait</span>" +
      "<span>scale: the whole run, " + esc(dur(TOTAL)) + "; click a step for its details</span></div>" + html.join("");
    var canvases = el.querySelectorAll("canvas[data-k]");
    for (var i = 0; i < canvases.length; i++) drawItems(canvases[i]);
  }

  function pre(value) {
    if (value && typeof value === "object" && "__clipped__" in value) {
      return "<pre>" + esc(value.__clipped__) + "\n\u2026 (" + value.more + " more characters: see the manifest)</pre>";
    }
    return "<pre>" + esc(typeof value === "string" ? value : JSON.stringify(value, null, 2)) + "</pre>";
  }
  function folded(rec) {
    var html = "";
    [["req", "request"], ["out", "output"], ["exp", "exports"], ["logs", "logs"]].forEach(function (p) {
      if (rec[p[0]] === undefined) return;
      html += "<details data-fold=\"" + p[0] + "\"><summary>" + p[1] + "</summary></details>";
    });
    return html;
  }
  function attemptsTable(rec) {
    if (!rec.att.length) return "";
    var rows = "", prevEnd = null;
    rec.att.forEach(function (a, i) {
      var wait = prevEnd != null && a[0] != null ? dur(Math.max(a[0] - prevEnd, 0)) : "";
      rows += "<tr><td>" + (i + 1) + "</td><td>" + (a[0] != null ? "+" + esc(dur(a[0])) : "") + "</td><td>" +
        esc(wait) + "</td><td>" + esc(dur(a[1])) + "</td><td>" + esc(a[2] || "") + "</td><td" +
        (a[3] ? " class=\"ierr\">" + esc(a[3]) : ">ok") + "</td></tr>";
      if (a[0] != null) prevEnd = a[0] + a[1];
    });
    return "<table><tr><th>attempt</th><th>started</th><th>waited</th><th>took</th><th>HTTP</th><th>result</th></tr>" +
      rows + "</table>";
  }
  function detailsHtml(step, rec, title) {
    var where = stepWhere(step);
    var html = "<div><b>" + esc(title) + "</b> " + badge(rec.status) +
      (where ? " <span class=\"where\">at <code>" + esc(where) + "</code></span>" : "") + "</div>";
    html += "<div class=\"where\">" + esc(step.provider) + (step.ptype && step.ptype !== step.provider ? " (" +
      esc(step.ptype) + ")" : "") + ", dispatch " + esc(step.dispatch) + (rec.run_id ? ", provider run id <code>" +
      esc(rec.run_id) + "</code>" : "") + (rec.reused ? ", reused from run " + esc(rec.reused) : "") + "</div>";
    if (rec.err) {
      html += "<p class=\"error\">" + esc(errorLine(rec.err, true)) +
        (rec.err.attribution ? "\nattribution: " + esc(rec.err.attribution) : "") + "</p>";
    }
    return html + attemptsTable(rec) + folded(rec);
  }
  function fillFold(details, rec) {
    if (details.getAttribute("data-filled")) return;
    details.setAttribute("data-filled", "1");
    details.insertAdjacentHTML("beforeend", pre(rec[details.getAttribute("data-fold")]));
  }
  function wireFolds(container, rec) {
    var folds = container.querySelectorAll("details[data-fold]");
    for (var i = 0; i < folds.length; i++) {
      (function (d) { d.addEventListener("toggle", function () { if (d.open) fillFold(d, rec); }); })(folds[i]);
    }
  }

  // a for_each step's items: a list that renders only the rows in view
  function itemsPanel(step, k) {
    var panel = document.createElement("div");
    panel.className = "items st-" + step.status;
    panel.setAttribute("data-items", String(k));
    var all = step.items, shown = all;
    var c = counts(all).map(function (p) { return badge(p[0], p[1] + " " + label(p[0])[1]); }).join(" ");
    var hasFail = all.some(isFailure);
    panel.innerHTML = "<div class=\"items-bar\"><span>" + all.length + " items</span>" + c +
      (hasFail ? "<label><input type=\"checkbox\" data-only-failed> failed only</label>" : "") +
      "<span class=\"where\">scale: the step, " + esc(dur(step.d)) + "</span></div>" +
      "<div class=\"vlist\"><div class=\"vspacer\"></div><div class=\"vrows\"></div></div>" +
      "<div class=\"item-details\" hidden></div>";
    var list = panel.querySelector(".vlist"), spacer = panel.querySelector(".vspacer"),
        rows = panel.querySelector(".vrows"), detail = panel.querySelector(".item-details");
    var base = step.s || 0, len = Math.max(step.d || 0, 1);
    all.forEach(function (it) {
      if (it.s != null) { base = Math.min(base, it.s); len = Math.max(len, it.s + it.d - base); }
    });
    var selected = -1, pending = false;
    function layout() {
      list.style.height = Math.min(shown.length, LIST_ROWS) * ROW + 2 + "px";
      spacer.style.height = shown.length * ROW + "px";
      draw();
    }
    function draw() {
      pending = false;
      var first = Math.max(0, Math.floor(list.scrollTop / ROW) - 5);
      var last = Math.min(shown.length, first + LIST_ROWS + 10);
      var html = "";
      for (var n = first; n < last; n++) {
        var it = shown[n], l = label(it.status);
        html += "<div class=\"irow st-" + esc(it.status) + (it.i === selected ? " sel" : "") + "\" data-i=\"" + it.i +
          "\" data-item=\"" + esc(step.id) + "[" + it.i + "]\"><div class=\"lbl\">" + l[0] + " " + esc(l[1]) +
          "</div><div class=\"sid\">" + esc(step.id) + "[" + it.i + "]" + (it.att.length > 1 ? " <small>" +
          it.att.length + " att.</small>" : "") + "</div><div class=\"track\">" + bars(it, base, len) +
          "</div><div class=\"dur\">" + (it.status === "not_run" ? "" : esc(dur(it.d))) + "</div></div>";
      }
      rows.style.top = first * ROW + "px";
      rows.innerHTML = html;
    }
    list.addEventListener("scroll", function () {
      if (!pending) { pending = true; window.requestAnimationFrame(draw); }
    });
    rows.addEventListener("click", function (ev) {
      var row = ev.target.closest(".irow");
      if (!row) return;
      var i = +row.getAttribute("data-i");
      if (selected === i) { selected = -1; detail.hidden = true; detail.innerHTML = ""; draw(); return; }
      selected = i;
      var it = null;
      for (var n = 0; n < all.length; n++) { if (all[n].i === i) { it = all[n]; break; } }
      detail.innerHTML = detailsHtml(step, it, step.id + "[" + i + "]");
      detail.hidden = false;
      wireFolds(detail, it);
      draw();
    });
    var only = panel.querySelector("[data-only-failed]");
    if (only) {
      only.addEventListener("change", function () {
        shown = only.checked ? all.filter(isFailure) : all;
        list.scrollTop = 0;
        layout();
      });
    }
    panel.addEventListener("click", function (ev) { ev.stopPropagation(); });
    panel.layout = layout;
    return panel;
  }

  function toggle(row) {
    var k = +row.getAttribute("data-k"), step = D.steps[k];
    var open = row.getAttribute("aria-expanded") === "true";
    var next = row.nextElementSibling;
    while (next && (next.classList.contains("details") || next.classList.contains("items"))) {
      var after = next.nextElementSibling;
      next.parentNode.removeChild(next);
      next = after;
    }
    row.setAttribute("aria-expanded", open ? "false" : "true");
    if (open) return;
    var box = document.createElement("div");
    box.className = "details st-" + step.status;
    box.innerHTML = detailsHtml(step, step, step.id + (step.name ? " \u2014 " + step.name : ""));
    box.addEventListener("click", function (ev) { ev.stopPropagation(); });
    wireFolds(box, step);
    row.parentNode.insertBefore(box, row.nextSibling);
    if (step.items && step.items.length) {
      var panel = itemsPanel(step, k);
      box.parentNode.insertBefore(panel, box.nextSibling);
      panel.layout();
    }
  }

  renderHead();
  renderErrors();
  renderTimeline();
  var outputs = D.outputs && Object.keys(D.outputs).length ? D.outputs : null;
  var out = document.getElementById("outputs");
  if (outputs) {
    out.innerHTML = "<h2>Outputs</h2>" + pre(outputs);
  } else {
    out.parentNode.removeChild(out);
  }

  var timeline = document.getElementById("timeline");
  timeline.addEventListener("click", function (ev) {
    var row = ev.target.closest(".row");
    if (row) toggle(row);
  });
  timeline.addEventListener("keydown", function (ev) {
    if ((ev.key === "Enter" || ev.key === " ") && ev.target.classList.contains("row")) {
      ev.preventDefault();
      toggle(ev.target);
    }
  });
  document.addEventListener("click", function (ev) {
    var link = ev.target.closest("[data-open]");
    if (!link) return;
    var row = document.getElementById("step-" + link.getAttribute("data-open"));
    if (row && row.getAttribute("aria-expanded") !== "true") toggle(row);
  });
  var resized = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resized);
    resized = window.setTimeout(function () {
      var canvases = timeline.querySelectorAll("canvas[data-k]");
      for (var i = 0; i < canvases.length; i++) drawItems(canvases[i]);
    }, 100);
  });
  document.documentElement.setAttribute("data-rendered", String(D.steps.length));
})();
"""
