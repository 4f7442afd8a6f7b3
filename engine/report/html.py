"""The HTML run report (``run --html PATH``, ``runbook report MANIFEST --html PATH``).

One self-contained file: its CSS and script are inline, it fetches nothing (a Content Security
Policy forbids any fetch, so it works the same from ``file://``), and the run is embedded as
JSON that the script renders. It shows the run's header (status, runbook, git commit,
duration), the errors with their ``FILE:LINE``, and a timeline of the steps and ``for_each``
items with their attempts and the retry waits between them, drawn to scale; every status is
shown by colour and by text. A step's request, output, exports and logs are folded and only
rendered when unfolded. A step that called a runbook (or an item of one) opens onto the called
runbook's steps, indented rows on the run's time axis that open the same way, at any depth.

It stays usable for thousands of steps and items: a step is one light row; a ``for_each``
step's items are rendered only when its list is opened, and then only those scrolled into
view; a called runbook's steps only while their caller (or its item) is open; details exist
in the page only while they are open.

It reads only the manifest's records, whose requests, outputs and errors are already
redacted by taint and scrubbed of known secret values: nothing here sees a raw value.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from engine.report import Manifest
from engine.report.positions import Lines, line_of, step_lines

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
    """Offsets from the run's start, in milliseconds, and the latest end of anything drawn."""

    def __init__(self, t0: float | None) -> None:
        self.t0 = t0
        self.end = 0

    def offset(self, stamp: Any) -> int | None:
        at = _ms(stamp)
        return None if at is None or self.t0 is None else max(0, round(at - self.t0))

    def place(self, record: Record) -> Record:
        """A record's start, duration and ``[offset, duration, http status, error]`` per attempt."""
        start, duration = self.offset(record.get("started_at")), record.get("duration_ms") or 0
        attempts = [[self.offset(a.get("started_at")), a.get("duration_ms") or 0, a.get("http_status"), a.get("error")]
                    for a in record.get("attempts") or []]
        for at, took in [(start, duration), *((a[0], a[1]) for a in attempts)]:
            if at is not None:
                self.end = max(self.end, at + took)
        return {"s": start, "d": duration, "att": attempts}


def _outcome(record: Record, timeline: _Timeline) -> Record:
    """What a step and an item share: status, times, attempts, error, run id, the folded values."""
    data: Record = {"status": record["status"], **timeline.place(record), "err": record.get("error"),
                    "run_id": record.get("run_id")}
    if record.get("reused_from"):
        data["reused"] = record["reused_from"]
    for key, short in (("request", "req"), ("output", "out"), ("exports", "exp"), ("logs", "logs")):
        value = record.get(key)
        if value not in (None, {}, []):
            data[short] = _folded(value)
    return data


class _Steps:
    """Step records as the page reads them, the steps of the runbooks they called nested under them."""

    def __init__(self, timeline: _Timeline) -> None:
        self.timeline = timeline
        #: the lines of each called runbook's steps, by its path and sha256: its file is read at most once
        self._called_lines: dict[tuple[Any, Any], Lines] = {}

    def of(self, records: list[Record], lines: Lines) -> list[Record]:
        return [self._step(record, lines) for record in records]

    def _step(self, record: Record, lines: Lines) -> Record:
        step: Record = {"id": record["id"], "name": record.get("name"), "section": record.get("section", "steps"),
                        "provider": record.get("provider"), "ptype": record.get("provider_type"),
                        "dispatch": record.get("dispatch"), "line": line_of(lines, record),
                        **_outcome(record, self.timeline)}
        called = record.get("called") or {}
        if called:
            step["called"] = {"path": called.get("path"), "name": called.get("name")}
        if isinstance(record.get("children"), list):
            step["children"] = self._children(called, record["children"])
        if record.get("items") is not None:
            step["items"] = [self._item(item, n, called) for n, item in enumerate(record["items"])]
        return step

    def _item(self, record: Record, position: int, called: Record) -> Record:
        item: Record = {"i": record.get("index", position), **_outcome(record, self.timeline)}
        if isinstance(record.get("children"), list):
            item["children"] = self._children(called, record["children"])
        return item

    def _children(self, called: Record, children: list[Record]) -> list[Record]:
        """A called runbook's steps at their lines in its file: each the line it recorded, else the
        file's, when it still holds the text that ran (read at most once per file)."""
        key = (called.get("path"), called.get("sha256"))
        if key not in self._called_lines:
            self._called_lines[key] = step_lines({"runbook": called, "steps": children})
        recorded = step_lines({"runbook": {}, "steps": children})  # no file: only their own lines
        return self.of(children, {**self._called_lines[key], **recorded})


def report_data(manifest: Manifest, manifest_path: str | None = None) -> Record:
    """The run as the page's script reads it (offsets in milliseconds from the run's start)."""
    run, runbook = manifest["run"], manifest["runbook"]
    timeline = _Timeline(_ms(run.get("started_at")))
    steps = _Steps(timeline).of(manifest.get("steps") or [], step_lines(manifest))
    total = max(run.get("duration_ms") or 0, timeline.end, 1)
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
.sid .callers { color: var(--muted); }
.children { box-shadow: inset 3px 0 0 var(--line); }
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
  function stepWhere(n) {
    return n.file && n.step.line ? n.file + ":" + n.step.line : "";
  }

  // a step or an item as the page shows it, found by its path ("3" the run's 4th step, "3.1" the 2nd
  // step of the runbook it called, "3.i5.0" the 1st step that its 6th item's call ran): its record,
  // the step it is of (an item's is its for_each step), the callers shown before its id, the id
  // shown, the runbook file it is in and how deep in calls
  function topNode(k) {
    var step = D.steps[k];
    return {path: String(k), rec: step, step: step, callers: "", label: step.id, file: D.runbook.path, depth: 0};
  }
  function childNode(n, part) {
    if (part.charAt(0) === "i") {
      var item = n.rec.items[+part.slice(1)];
      return {path: n.path + "." + part, rec: item, step: n.step, callers: n.callers,
        label: n.label + "[" + item.i + "]", file: n.file, depth: n.depth};
    }
    var kid = n.rec.children[+part], callers = n.label + " \u203a ";
    return {path: n.path + "." + part, rec: kid, step: kid, callers: callers, label: callers + kid.id,
      file: (n.step.called || {}).path, depth: n.depth + 1};
  }
  function nodeAt(path) {
    var parts = String(path).split("."), n = topNode(+parts[0]);
    for (var p = 1; p < parts.length; p++) n = childNode(n, parts[p]);
    return n;
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

  function errorItem(n, causes) {
    var where = n.rec.err.location || stepWhere(n);
    return "<li><a href=\"#step-" + n.path + "\" data-open=\"" + n.path + "\">" + esc(n.label) + "</a> " +
      esc(label(n.rec.status)[1]) + (where ? " at <code class=\"where\">" + esc(where) + "</code>" : "") +
      ": <span class=\"error\">" + esc(errorLine(n.rec.err, false)) + "</span>" +
      (causes.length ? "<ul>" + causes.join("") + "</ul>" : "") + "</li>";
  }
  // the failed steps deepest in the runbooks a step called: where its failure started
  function failureCauses(n) {
    var found = [];
    (n.rec.children || []).forEach(function (kid, c) {
      if (!isFailure(kid) || !kid.err) return;
      var kn = childNode(n, String(c)), deeper = failureCauses(kn);
      if (deeper.length) found.push.apply(found, deeper); else found.push(errorItem(kn, []));
    });
    return found;
  }
  function renderErrors() {
    var out = [];
    D.steps.forEach(function (step, k) {
      if (isFailure(step) && step.err) {
        var n = topNode(k);
        out.push(errorItem(n, failureCauses(n)));
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

  function tally(list, noun) {
    var fails = list.filter(isFailure).length;
    return " <small>" + list.length + " " + noun + (list.length === 1 ? "" : "s") +
      (fails ? ", " + fails + " failed" : "") + "</small>";
  }
  // the row of a step of the run or of a runbook it called (indented, after its callers' ids)
  function stepRow(n) {
    var step = n.rec, l = label(step.status);
    var extra = n.depth && step.section === "finally" ? " <small>finally</small>" : "";
    if (step.items) {
      extra += tally(step.items, "item");
    } else if (step.children) {
      extra += tally(step.children, "step");
    } else if (step.att.length > 1) {
      extra += " <small>" + step.att.length + " attempts</small>";
    }
    var name = step.name ? " <small>" + esc(step.name) + "</small>" : "";
    var indent = n.depth ? " style=\"padding-left:" + (6 + 18 * n.depth) + "px\"" : "";
    return "<div class=\"grid row st-" + esc(step.status) + "\" id=\"step-" + n.path + "\" data-path=\"" + n.path +
      "\" data-step=\"" + esc(n.label) + "\" tabindex=\"0\" role=\"button\" aria-expanded=\"false\">" +
      "<div class=\"lbl\">" + l[0] + " " + esc(l[1]) + "</div>" +
      "<div class=\"sid\" title=\"" + esc(n.label) + "\"" + indent + ">" +
      (n.callers ? "<span class=\"callers\">" + esc(n.callers) + "</span>" : "") + esc(step.id) + name + extra +
      "</div><div class=\"track\">" + (step.items ? "<canvas data-path=\"" + n.path + "\"></canvas>" : "") +
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
    var step = nodeAt(canvas.getAttribute("data-path")).rec;
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
  function drawAllItems(root) {
    var canvases = root.querySelectorAll("canvas[data-path]");
    for (var i = 0; i < canvases.length; i++) drawItems(canvases[i]);
  }

  function renderTimeline() {
    var html = [axis()], section = null;
    D.steps.forEach(function (step, k) {
      if (step.section !== section) {
        section = step.section;
        html.push("<div class=\"sect\">" + (section === "finally" ? "finally" : "steps") + "</div>");
      }
      html.push(stepRow(topNode(k)));
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
    drawAllItems(el);
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
  function detailsHtml(n) {
    var rec = n.rec, step = n.step, where = stepWhere(n);
    var title = n.label + (rec === step && step.name ? " \u2014 " + step.name : "");
    var html = "<div><b>" + esc(title) + "</b> " + badge(rec.status) +
      (where ? " <span class=\"where\">at <code>" + esc(where) + "</code></span>" : "") + "</div>";
    var what = step.called ? "calls <code>" + esc(step.called.path) + "</code>" +
      (step.called.name ? " (" + esc(step.called.name) + ")" : "") :
      esc(step.provider) + (step.ptype && step.ptype !== step.provider ? " (" + esc(step.ptype) + ")" : "") +
      ", dispatch " + esc(step.dispatch);
    html += "<div class=\"where\">" + what +
      (rec.run_id ? ", provider run id <code>" + esc(rec.run_id) + "</code>" : "") +
      (rec.reused ? ", reused from run " + esc(rec.reused) : "") + "</div>";
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
  function itemsPanel(n) {
    var step = n.rec, panel = document.createElement("div");
    panel.className = "items st-" + step.status;
    panel.setAttribute("data-items", n.path);
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
    var selected = -1, pending = false, itemSteps = null;  // the selected item's called steps
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
      for (var r = first; r < last; r++) {
        var it = shown[r], l = label(it.status);
        html += "<div class=\"irow st-" + esc(it.status) + (it.i === selected ? " sel" : "") + "\" data-i=\"" + it.i +
          "\" data-item=\"" + esc(n.label) + "[" + it.i + "]\"><div class=\"lbl\">" + l[0] + " " + esc(l[1]) +
          "</div><div class=\"sid\">" + esc(n.label) + "[" + it.i + "]" + (it.att.length > 1 ? " <small>" +
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
      if (itemSteps && itemSteps.parentNode) itemSteps.parentNode.removeChild(itemSteps);
      itemSteps = null;
      if (selected === i) { selected = -1; detail.hidden = true; detail.innerHTML = ""; draw(); return; }
      selected = i;
      var position = 0;
      while (all[position].i !== i) position++;
      var item = childNode(n, "i" + position);
      detail.innerHTML = detailsHtml(item);
      detail.hidden = false;
      wireFolds(detail, item.rec);
      if (item.rec.children && item.rec.children.length) itemSteps = placeAfter(panel, childrenBlock(item));
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

  // the steps of the runbook a step (or an item) called, as rows on the run's time axis
  function childrenBlock(n) {
    var block = document.createElement("div");
    block.className = "children";
    block.setAttribute("data-children", n.path);
    block.innerHTML = n.rec.children.map(function (kid, c) { return stepRow(childNode(n, String(c))); }).join("");
    return block;
  }
  function placeAfter(node, el) {
    node.parentNode.insertBefore(el, node.nextSibling);
    drawAllItems(el);
    return el;
  }
  // what a row opened under it: its details, its items, the steps it called
  function isOpenedPart(el) {
    return el && ["details", "items", "children"].some(function (c) { return el.classList.contains(c); });
  }

  function toggle(row) {
    var n = nodeAt(row.getAttribute("data-path")), step = n.rec;
    var open = row.getAttribute("aria-expanded") === "true";
    while (isOpenedPart(row.nextElementSibling)) row.parentNode.removeChild(row.nextElementSibling);
    row.setAttribute("aria-expanded", open ? "false" : "true");
    if (open) return;
    var box = document.createElement("div");
    box.className = "details st-" + step.status;
    box.innerHTML = detailsHtml(n);
    box.addEventListener("click", function (ev) { ev.stopPropagation(); });
    wireFolds(box, step);
    var last = placeAfter(row, box);
    if (step.items && step.items.length) {
      var panel = placeAfter(last, itemsPanel(n));
      panel.layout();
      last = panel;
    }
    if (step.children && step.children.length) placeAfter(last, childrenBlock(n));
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
    var parts = link.getAttribute("data-open").split(".");  // the step and every call it is in, opened
    for (var p = 1; p <= parts.length; p++) {
      var row = document.getElementById("step-" + parts.slice(0, p).join("."));
      if (row && row.getAttribute("aria-expanded") !== "true") toggle(row);
    }
  });
  var resized = null;
  window.addEventListener("resize", function () {
    window.clearTimeout(resized);
    resized = window.setTimeout(function () {
      drawAllItems(timeline);
    }, 100);
  });
  document.documentElement.setAttribute("data-rendered", String(D.steps.length));
})();
"""
