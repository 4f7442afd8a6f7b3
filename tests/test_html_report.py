"""The HTML run report (``run --html``, ``runbook report MANIFEST --html``), loaded in a real
headless Chromium (tests/chromium.py): no console error, nothing fetched, every step in the
page, details rendered when asked for, and small and quick for 2,000 steps and 10,000 items;
the steps of called runbooks under their callers, rendered when opened.

The screenshots are kept as CI artifacts under tests/artifacts/.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.emulator import Emulator
from tests.chromium import Page
from tests.conftest import ROOT, base_env, check_manifest, run_cli

ARTIFACTS = ROOT / "tests" / "artifacts"
SECRET = "html-s3cr3t-value-42"

RUNBOOK = """
version: 1
name: nightly <sync> & "co"
vars:
  users:
    - {name: ann, action: invite}
    - {name: bob, action: invite}
    - {name: cy, action: fail-500}
    - {name: di, action: invite}
    - {name: ed, action: invite}
    - {name: fay, action: fail-503}
providers:
  crm: {type: membrane, token: "{{ secrets.MEMBRANE_TOKEN }}"}
steps:
  - id: contact
    name: Create the contact
    provider: crm
    dispatch: {id: create-contact}
    input: {email: jane@example.com, key: "{{ secrets.HTML_KEY }}", note: "</script><script>alert(1)</script>"}
  - id: flaky
    provider: crm
    retry: {attempts: 3, backoff: fixed, initial_delay: 150ms, on: [429]}
    dispatch: {id: busy-action}
    input: {contact: "{{ steps.contact.output.id }}"}
  - id: skipped_one
    provider: crm
    when: "{{ vars.users | length == 0 }}"
    dispatch: {id: never}
  - id: invite
    provider: crm
    for_each: "{{ vars.users }}"
    as: user
    concurrency: 2
    fail_fast: false
    continue_on_error: true
    dispatch: {id: "{{ user.action }}"}
    input: {name: "{{ user.name }}"}
  - id: broken
    provider: crm
    dispatch: {key: fail-422}
  - id: later
    provider: crm
    dispatch: {id: after}
finally:
  - id: notify
    provider: crm
    dispatch: {id: post-report}
    input: {status: "{{ run.status }}"}
"""


@pytest.fixture
def page() -> Iterator[Page]:
    browser = Page()
    try:
        yield browser
    finally:
        browser.close()


def _git_repo(folder: Path) -> str:
    env = base_env(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com", GIT_COMMITTER_NAME="t",
                   GIT_COMMITTER_EMAIL="t@example.com")
    for args in (["init", "-q"], ["add", "runbook.yml"], ["commit", "-q", "-m", "runbook"]):
        subprocess.run(["git", *args], cwd=folder, env=env, check=True, capture_output=True)
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                          check=True).stdout.strip()


def _real_run(write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]):
    write(RUNBOOK)
    commit = _git_repo(tmp_path)
    emulator.add_fault({"action": "busy-action"}, status=429, retry_after=0, times=2)
    report = tmp_path / "out" / "report.html"
    result = run_cli(["run", "runbook.yml", "--html", str(report)], cwd=tmp_path,
                     env=dict(membrane_env, HTML_KEY=SECRET))
    assert result.code == 1, result.stderr
    return result, report, commit


def test_the_html_report_of_a_run_in_chromium(write, tmp_path: Path, emulator: Emulator,
                                              membrane_env: dict[str, str], page: Page) -> None:
    result, report, commit = _real_run(write, tmp_path, emulator, membrane_env)
    manifest = result.manifest
    text = report.read_text(encoding="utf-8")
    assert SECRET not in text  # recorded as in the manifest: redacted
    assert "<script>alert(1)" not in text  # the output echoing it is data, escaped
    assert "http://" not in text.split("<script>", 1)[0] and 'src="' not in text and "<link" not in text

    page.open(report)
    ids = [step["id"] for step in manifest["steps"]]
    assert ids == ["contact", "flaky", "skipped_one", "invite", "broken", "later", "notify"]
    assert page.eval("[...document.querySelectorAll('[data-step]')].map(e => e.dataset.step)") == ids
    body = page.eval("document.body.innerText")
    for step_id in ids:
        assert step_id in body
    # the header: status, runbook, git commit, duration, by text as well as by colour
    head = page.eval("document.getElementById('head').innerText")
    assert "failed" in head and 'nightly <sync> & "co"' in head and commit[:12] in head
    assert "duration" in head and "runbook.yml" in head
    labels = page.eval("[...document.querySelectorAll('.row .lbl')].map(e => e.innerText)")
    assert labels == ["✓ succeeded", "✓ succeeded", "↷ skipped", "✗ failed", "✗ failed", "– not run", "✓ succeeded"]
    colours = page.eval("[...document.querySelectorAll('.row .lbl')].map(e => getComputedStyle(e).color)")
    assert colours[0] != colours[3] != colours[2]
    # the errors, with the field's FILE:LINE:COL; the steps' lines
    errors = page.eval("document.getElementById('errors').innerText")
    broken = next(s for s in manifest["steps"] if s["id"] == "broken")
    assert broken["error"]["location"] in errors and "client_error (HTTP 422)" in errors
    assert broken["line"] > 1
    # the flaky step: three attempts, the two waits between them drawn
    flaky = page.eval("(() => { const r = document.querySelector('[data-step=flaky] .track');"
                      " return [r.querySelectorAll('.att').length, r.querySelectorAll('.att.bad').length,"
                      " r.querySelectorAll('.wait').length]; })()")
    assert flaky == [3, 2, 2]
    # nothing folded is in the page until it is opened
    assert "jane@example.com" not in page.eval("document.documentElement.outerHTML")
    page.click("[data-step=contact]")
    page.click("[data-step=contact] + .details details[data-fold=req] summary")
    request = page.eval("document.querySelector('[data-step=contact] + .details details[data-fold=req] pre').innerText")
    assert "jane@example.com" in request and '"key": "***"' in request
    assert "</script><script>alert(1)</script>" in request  # shown as text, never run
    page.click("[data-step=broken]")
    details = page.eval("document.querySelector('[data-step=broken] + .details').innerText")
    assert f"runbook.yml:{broken['line']}" in details and broken["error"]["location"] in details
    # the fan-out: its items rendered when opened, the failed ones marked, one opened
    page.click("[data-step=invite]")
    items = page.eval("[...document.querySelectorAll('[data-items] .irow')].map(e => [e.dataset.item, "
                      "e.querySelector('.lbl').innerText])")
    assert items == [[f"invite[{i}]", "✗ failed" if i in (2, 5) else "✓ succeeded"] for i in range(6)]
    page.click("[data-item='invite[2]']")
    item = page.eval("document.querySelector('[data-items] .item-details').innerText")
    assert "server_error (HTTP 500)" in item and "invite[2]" in item
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(ARTIFACTS / "html-report.png", full_page=True)

    assert page.problems() == []
    assert {url.split(":", 1)[0] for url in page.requests()} == {"file"}  # nothing fetched but the file


def _stamp(ms: int) -> str:
    s, ms = divmod(ms, 1000)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"2026-01-01T{h:02d}:{m:02d}:{s:02d}.{ms:03d}Z"


def _outcome(start: int, status: str, attempts: int = 1) -> dict:
    """A synthetic record's outcome: ``attempts`` attempts 30 ms apart from ``start`` (ms into the run)."""
    tries = [{"number": n + 1, "started_at": _stamp(start + n * 30), "duration_ms": 10, "http_status": 200,
              "error": None if n == attempts - 1 else "rate_limited: slow down"} for n in range(attempts)]
    failed = status == "failed"
    return {"status": status, "started_at": _stamp(start), "finished_at": _stamp(start + 30 * attempts),
            "duration_ms": 30 * attempts - 20, "attempts": tries, "request": {"id": "act", "n": start},
            "request_sha256": None, "output": None if failed else {"id": f"o{start}"}, "exports": {},
            "logs": [], "run_id": f"run_{start}",
            "error": {"type": "server_error", "message": "boom", "http_status": 500, "attribution": None,
                      "location": "big.yml:9:5"} if failed else None}


def _step(step_id: str, line: int, start: int, status: str = "succeeded", attempts: int = 1) -> dict:
    return {"id": step_id, "name": None, "section": "steps", "line": line, "provider": "crm",
            "provider_type": "membrane", "dispatch": "id", **_outcome(start, status, attempts)}


def _finished_run(records: list[dict], duration: int) -> dict:
    """A failed run of ``big.yml`` that took ``duration`` ms, valid against the manifest's schema."""
    return check_manifest({
        "manifest_version": 1, "engine": {"name": "runbook", "version": "0.1.0"},
        "run": {"id": "20260101T000000Z-b16b16", "status": "failed", "started_at": _stamp(0),
                "finished_at": _stamp(duration), "duration_ms": duration, "resumed_from": None},
        "runbook": {"path": "big.yml", "name": "big", "sha256": "0" * 64, "git": {"commit": "a" * 40, "dirty": False}},
        "vars": {}, "steps": records, "outputs": {},
    })


def _synthetic_manifest(steps: int, fanouts: int, items_each: int) -> dict:
    """A finished run of ``steps`` steps, ``fanouts`` of them for_each steps of ``items_each``
    items, every 97th item failed, every 50th step retried once."""
    records, t, period = [], 0, steps // fanouts
    for k in range(steps):
        if k % period == 0:
            record = _step(f"step_{k:04d}", 4 + 4 * k, t, "failed")
            item_records = []
            for i in range(items_each):
                item_records.append({"index": i, **_outcome(t + i // 20, "failed" if i % 97 == 5 else "succeeded")})
            record.update(attempts=[], items=item_records, output=None)
            t += items_each // 20 + 40
        else:
            record = _step(f"step_{k:04d}", 4 + 4 * k, t, attempts=2 if k % 50 == 7 else 1)
            t += 70
        records.append(record)
    return _finished_run(records, t)


def test_the_html_report_stays_small_for_2000_steps_and_10000_items(tmp_path: Path, page: Page) -> None:
    manifest = _synthetic_manifest(2000, 5, 2000)
    assert sum(len(s.get("items") or ()) for s in manifest["steps"]) == 10_000
    path = tmp_path / "big.json"
    path.write_text(json.dumps(manifest))
    report = tmp_path / "big.html"
    result = run_cli(["report", str(path), "--html", str(report)], cwd=tmp_path, timeout=120)
    assert result.code == 0, result.stderr
    assert result.stdout == f"html: {report}\n"

    seconds = page.open(report)
    assert seconds < 10, seconds
    assert page.eval("document.documentElement.dataset.rendered") == "2000"
    ids = page.eval("[...document.querySelectorAll('[data-step]')].map(e => e.dataset.step)")
    assert ids == [s["id"] for s in manifest["steps"]]
    nodes = page.eval("document.getElementsByTagName('*').length")
    size = page.eval("document.documentElement.outerHTML.length")
    assert nodes < 25_000 and size < 2_000_000, (nodes, size)  # no element per item, no embedded text
    # a fan-out of 2,000 items: only the rows in view exist, and scrolling brings the others
    page.click("[data-step=step_0000]")
    rows = page.eval("document.querySelectorAll('[data-items] .irow').length")
    assert 0 < rows <= 40
    page.eval("(() => { const l = document.querySelector('[data-items] .vlist'); l.scrollTop = l.scrollHeight;"
              " l.dispatchEvent(new Event('scroll')); })()")
    page.eval("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    last = page.eval("[...document.querySelectorAll('[data-items] .irow')].map(e => e.dataset.item).pop()")
    assert last == "step_0000[1999]"
    assert page.eval("document.querySelectorAll('[data-items] .irow').length") <= 40
    # failed only
    page.click("[data-items] [data-only-failed]")
    failed = page.eval("[...document.querySelectorAll('[data-items] .irow .lbl')].map(e => e.innerText)")
    assert failed and set(failed) == {"✗ failed"}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(ARTIFACTS / "html-report-2000-steps.png")
    assert page.problems() == []


def test_report_refuses_what_is_not_a_manifest_and_a_missing_report(tmp_path: Path) -> None:
    (tmp_path / "not.json").write_text("[1, 2]")
    result = run_cli(["report", "not.json", "--html", "r.html"], cwd=tmp_path)
    assert result.code == 2 and "not a runbook manifest" in result.stderr
    result = run_cli(["report", "not.json"], cwd=tmp_path)
    assert result.code == 2 and "--html PATH" in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_an_html_report_of_a_run_that_never_started(tmp_path: Path, page: Page) -> None:
    (tmp_path / "bad.yml").write_text("version: 1\nname: bad\nsteps:\n  - {id: a, provider: membrane, tiemout: 3}\n")
    report = tmp_path / "bad.html"
    result = run_cli(["run", "bad.yml", "--html", str(report)], cwd=tmp_path)
    assert result.code == 2
    page.open(report)
    assert page.eval("[...document.querySelectorAll('[data-step]')].map(e => e.dataset.step)") == ["validate"]
    assert "bad.yml:4" in page.eval("document.getElementById('errors').innerText")
    assert page.problems() == []


CALLED_LEAF = """\
version: 1
name: leaf
inputs:
  email: {type: string, required: true}
steps:
  - id: make
    provider: membrane
    dispatch: {key: create-contact}
    input: {email: "{{ vars.email }}"}
  - id: broken
    provider: membrane
    dispatch: {key: fail-422}
finally:
  - id: note
    provider: membrane
    dispatch: {key: note}
"""

CALLED_MID = """\
version: 1
name: mid
inputs:
  who: {type: string, required: true}
steps:
  - id: first
    provider: membrane
    dispatch: {key: first}
  - id: leaf
    runbook: ./leaf.yml
    with: {email: "{{ vars.who }}"}
"""

CALLER = """\
version: 1
name: caller
vars:
  customers: [{email: a@x.io}, {email: b@x.io}]
steps:
  - id: mid
    runbook: ./lib/mid.yml
    with: {who: ann@example.com}
    continue_on_error: true
  - id: many
    runbook: ./lib/leaf.yml
    for_each: "{{ vars.customers }}"
    fail_fast: false
    continue_on_error: true
    with: {email: "{{ item.email }}"}
  - id: after
    provider: membrane
    dispatch: {key: after}
"""

#: each row of the timeline: the id it shows (with its callers') and its status, as read
ROWS = "[...document.querySelectorAll('#timeline .row')].map(e => [e.querySelector('.sid').innerText, " \
       "e.querySelector('.lbl').innerText])"


def _line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def test_the_html_report_shows_the_steps_of_called_runbooks(write, tmp_path: Path, emulator: Emulator,
                                                            membrane_env: dict[str, str], page: Page) -> None:
    (tmp_path / "lib").mkdir()
    write(CALLED_LEAF, name="lib/leaf.yml")
    write(CALLED_MID, name="lib/mid.yml")
    write(CALLER, name="top.yml")
    report = tmp_path / "calls.html"
    result = run_cli(["run", "top.yml", "--html", str(report)], cwd=tmp_path, env=membrane_env)
    assert result.code == 1, result.stdout + result.stderr
    # where the failed child is, in the called runbook's file (not the caller's)
    failed_at = f"lib/leaf.yml:{_line_of(CALLED_LEAF, 'fail-422')}:"
    broken_step_at = f"lib/leaf.yml:{_line_of(CALLED_LEAF, 'id: broken')}"
    assert result.step("mid")["children"][1]["children"][1]["error"]["location"].startswith(failed_at)

    page.open(report)
    assert page.eval(ROWS) == [["mid 2 steps, 1 failed", "✗ failed"], ["many 2 items, 2 failed", "✗ failed"],
                               ["after", "✓ succeeded"]]  # the called runbooks' steps folded
    page.click("[data-step=mid]")
    page.click("[data-step='mid › leaf']")
    called_rows = [["mid › first", "✓ succeeded"], ["mid › leaf 3 steps, 1 failed", "✗ failed"],
                   ["mid › leaf › make", "✓ succeeded"], ["mid › leaf › broken", "✗ failed"],
                   ["mid › leaf › note finally", "✓ succeeded"]]
    assert page.eval(ROWS) == [["mid 2 steps, 1 failed", "✗ failed"], *called_rows,
                               ["many 2 items, 2 failed", "✗ failed"], ["after", "✓ succeeded"]]
    page.click("[data-step='mid › leaf › broken']")
    details = page.eval("document.querySelector(\"[data-step='mid › leaf › broken'] + .details\").innerText")
    assert failed_at in details and f"at {broken_step_at}" in details and "client_error (HTTP 422)" in details
    # on the run's time axis: the same track as the run's steps, the child's attempt within its caller's span
    axis = page.eval("""(() => {
        const box = s => document.querySelector(s).getBoundingClientRect();
        const top = box('[data-step=mid] .track'), child = box("[data-step='mid › leaf › broken'] .track");
        const span = box('[data-step=mid] .track .span'), att = box("[data-step='mid › leaf › broken'] .att.bad");
        return [top.left === child.left && top.width === child.width, span.left - 1 <= att.left,
                att.left <= span.right + 1]; })()""")
    assert axis == [True, True, True]
    page.click("[data-step=mid]")  # folded again: its steps leave the page
    assert page.eval("document.querySelectorAll('#timeline .row').length") == 3

    # the errors point at where the failure started; the link opens every call down to it
    errors = page.eval("document.getElementById('errors').innerText")
    assert f"mid › leaf › broken failed at {failed_at}" in errors
    page.eval("[...document.querySelectorAll('#errors a')].find(a => a.innerText === 'mid › leaf › broken').click()")
    assert page.eval(ROWS)[1:6] == called_rows
    assert page.eval("document.querySelector(\"[data-step='mid › leaf › broken']\").getAttribute('aria-expanded')") \
        == "true"

    # a for_each step that calls: an item opened shows the steps its call ran
    page.click("[data-step=many]")
    page.click("[data-item='many[1]']")
    item_rows = page.eval("[...document.querySelectorAll(\"[data-children='1.i1'] > .row\")].map(e => "
                          "[e.dataset.step, e.querySelector('.lbl').innerText])")
    assert item_rows == [["many[1] › make", "✓ succeeded"], ["many[1] › broken", "✗ failed"],
                         ["many[1] › note", "✓ succeeded"]]
    page.click("[data-step='many[1] › broken']")
    details = page.eval("document.querySelector(\"[data-step='many[1] › broken'] + .details\").innerText")
    assert failed_at in details and f"at {broken_step_at}" in details
    page.click("[data-item='many[0]']")  # another item: its steps replace the other's
    assert page.eval("[...document.querySelectorAll('[data-children] > .row')].map(e => e.dataset.step)"
                     ".filter(s => s.startsWith('many'))") == ["many[0] › make", "many[0] › broken", "many[0] › note"]
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(ARTIFACTS / "html-report-calls.png", full_page=True)

    assert page.problems() == []
    assert {url.split(":", 1)[0] for url in page.requests()} == {"file"}


def test_the_steps_of_called_runbooks_are_rendered_only_when_opened(tmp_path: Path, page: Page) -> None:
    """A call of 1,000 steps and a for_each call of 5,000 items of three steps each: none of
    them in the page until asked for, and then only the opened call's."""
    inner = [_step(f"inner_{c:04d}", 4 + 4 * c, 10 + 40 * c) for c in range(1000)]
    call = _step("call", 4, 0)
    call.update(provider="runbook", provider_type="runbook", dispatch="runbook", attempts=[], duration_ms=40_000,
                called={"path": "lib/long.yml", "name": "long", "sha256": "1" * 64}, children=inner)
    items = [{"index": i, **_outcome(40_000 + i, "failed" if i % 97 == 5 else "succeeded"),
              "children": [_step(f"part_{p}", 4 + 4 * p, 40_000 + i + p, "failed" if i % 97 == 5 and p == 1
                                 else "succeeded") for p in range(3)]} for i in range(5000)]
    fan = _step("fan", 9, 40_000, "failed")
    fan.update(provider="runbook", provider_type="runbook", dispatch="runbook", attempts=[], duration_ms=5_100,
               output=None, called={"path": "lib/three.yml", "name": "three", "sha256": "2" * 64}, items=items)
    path = tmp_path / "calls.json"
    path.write_text(json.dumps(_finished_run([call, fan, _step("after", 14, 45_200)], 45_300)))
    report = tmp_path / "calls.html"
    assert run_cli(["report", str(path), "--html", str(report)], cwd=tmp_path, timeout=120).code == 0

    assert page.open(report) < 10
    nodes = "document.getElementsByTagName('*').length"
    assert page.eval("[...document.querySelectorAll('.row')].map(e => e.dataset.step)") == ["call", "fan", "after"]
    assert page.eval(nodes) < 500
    page.click("[data-step=call]")
    shown = page.eval("[...document.querySelectorAll('[data-children] > .row')].map(e => e.dataset.step)")
    assert shown == [f"call › inner_{c:04d}" for c in range(1000)]
    page.click("[data-step=call]")
    page.click("[data-step=fan]")
    assert 0 < page.eval("document.querySelectorAll('[data-items] .irow').length") <= 40
    page.click("[data-item='fan[5]']")
    assert page.eval("[...document.querySelectorAll('[data-children] > .row')].map(e => [e.dataset.step, "
                     "e.querySelector('.lbl').innerText])") == [
        ["fan[5] › part_0", "✓ succeeded"], ["fan[5] › part_1", "✗ failed"], ["fan[5] › part_2", "✓ succeeded"]]
    assert page.eval(nodes) < 1000
    assert page.problems() == []
