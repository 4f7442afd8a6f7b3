"""Whatever can be known before step 1 is checked before step 1 (SPEC §4, §5).

Each test runs the real CLI against the emulator and checks, in the emulator's request
log, that nothing was sent when the run is refused (exit 2).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from engine.emulator import Emulator
from tests.conftest import act_bodies, base_env, run_cli

TWO_STEPS = """
version: 1
name: two-steps
vars: {email: jane@example.com, name: jane}
steps:
  - id: contact
    provider: membrane
    dispatch: {key: create-contact}
    input: {email: "{{ vars.email }}"}
  - id: greet
    provider: membrane
    dispatch: {key: send-greeting}
    input: {text: "TEXT"}
"""


def two_steps(write, text: str) -> Path:
    return write(TWO_STEPS.replace("TEXT", text))


def sent(emulator: Emulator) -> list[dict]:
    """Every request the emulator received (the token exchange and actions alike)."""
    return emulator.requests


def where(path: Path, text: str) -> str:
    """``FILE:LINE:COL`` of the first place ``text`` stands in ``path``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return f"{path}:{number}:{line.index(text) + 1}"
    raise AssertionError(text)


# -- 1. static template checks ------------------------------------------------------------------


def test_unknown_filter_is_refused_before_step_1(write, tmp_path: Path, emulator: Emulator,
                                                 membrane_env: dict[str, str]) -> None:
    path = two_steps(write, "Hello {{ vars.name | titel }}")
    for command in (["validate", str(path)], ["run", str(path)], ["plan", str(path)]):
        result = run_cli(command, cwd=tmp_path, env=membrane_env)
        assert result.code == 2, (command, result.stderr)
        at = where(path, '"Hello')
        assert f"{at}: steps[1] (greet) input.text: unknown filter 'titel' (did you mean 'title'?)" in result.stderr
    assert sent(emulator) == []
    assert not (tmp_path / "manifest.json").exists()


def test_unknown_test_and_step_attribute_typo(write, tmp_path: Path, emulator: Emulator,
                                              membrane_env: dict[str, str]) -> None:
    path = two_steps(write, "{{ steps.contact.outptu.id }} {{ 'a' if vars.name is stringy }}")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 2
    assert "steps.contact has no attribute 'outptu' (did you mean 'output'?)" in result.stderr
    assert "unknown test 'stringy' (did you mean 'string'?)" in result.stderr
    assert sent(emulator) == []


def test_provider_extras_and_exports_keys(write, tmp_path: Path) -> None:
    """A provider type declares what its steps add: Pipedream's stash_id, http's exports."""
    path = write("""
        version: 1
        name: extras
        providers:
          pd: {type: pipedream, project_id: proj_abc, environment: development, external_user_id: u1}
          web: {type: http, base_url: "https://example.com"}
        steps:
          - {id: dl, provider: pd, dispatch: {id: download}}
          - {id: get, provider: web, dispatch: {api: {path: /x}}}
          - id: use
            provider: membrane
            dispatch: {key: k}
            input:
              ok: "{{ steps.dl.stash_id }} {{ steps.get.exports.status }} {{ steps.dl.exports.anything }}"
              bad: "{{ steps.get.stash_id }} {{ steps.get.exports.stauts }}"
    """)
    result = run_cli(["validate", str(path)], cwd=tmp_path)
    assert result.code == 2
    errors = [line for line in result.stderr.splitlines() if ": steps[" in line]
    assert len(errors) == 2, result.stderr
    assert "input.bad: steps.get has no attribute 'stash_id'" in errors[0] + errors[1]
    assert "input.bad: steps.get.exports has no key 'stauts' (did you mean 'status'?)" in result.stderr


def test_unsafe_attributes_and_in_place_methods(write, tmp_path: Path, emulator: Emulator,
                                                membrane_env: dict[str, str]) -> None:
    path = two_steps(write, "{{ vars.name.__class__.mro() }} {{ steps.contact.output.func_globals }}")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 2
    for name in ("__class__", "mro", "func_globals"):
        assert f"'{name}' is not allowed in a template" in result.stderr
    appended = two_steps(write, "{% set seen = [] %}{{ seen.append(1) }}")
    result = run_cli(["run", str(appended)], cwd=tmp_path, env=membrane_env)
    assert result.code == 2
    assert "append() would change a value in place" in result.stderr
    assert sent(emulator) == []


def test_a_data_key_with_one_underscore_is_fine(write, tmp_path: Path, emulator: Emulator,
                                                membrane_env: dict[str, str]) -> None:
    path = two_steps(write, "{{ steps.contact.output._id | default('none') }}")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr


# -- 2. variables -------------------------------------------------------------------------------


def test_unset_var_warns_in_validate_and_refuses_run(write, tmp_path: Path, emulator: Emulator,
                                                     membrane_env: dict[str, str]) -> None:
    path = two_steps(write, "to {{ vars.channel }}")
    checked = run_cli(["validate", str(path)], cwd=tmp_path, env=membrane_env)
    assert checked.code == 0
    assert "warning: steps[1] (greet) input.text: vars.channel is not set" in checked.stderr
    for command in ("run", "plan"):
        result = run_cli([command, str(path)], cwd=tmp_path, env=membrane_env)
        assert result.code == 2, result.stderr
        at = where(path, '"to ')
        assert f"{at}: steps[1] (greet) input.text: vars.channel is not set" in result.stderr
    assert sent(emulator) == []
    given = run_cli(["run", str(path), "--var", "channel=C01"], cwd=tmp_path, env=membrane_env)
    assert given.code == 0, given.stderr
    assert act_bodies(emulator)[1]["input"] == {"text": "to C01"}


def test_guarded_var_is_optional(write, tmp_path: Path, emulator: Emulator,
                                 membrane_env: dict[str, str]) -> None:
    path = two_steps(write, "to {{ vars.channel | default('general') }}")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    assert act_bodies(emulator)[1]["input"] == {"text": "to general"}


def test_misspelled_var_flag_is_refused(write, tmp_path: Path, emulator: Emulator,
                                        membrane_env: dict[str, str]) -> None:
    path = two_steps(write, "hi")
    result = run_cli(["run", str(path), "--var", "emial=x@example.com"], cwd=tmp_path, env=membrane_env)
    assert result.code == 2
    assert "--var emial: this runbook neither declares vars.emial under vars: nor uses it " \
           "(did you mean 'email'?)" in result.stderr
    assert sent(emulator) == []


def test_validate_refuses_a_var_no_runbook_knows(write, tmp_path: Path) -> None:
    first = two_steps(write, "hi")
    second = write("""
        version: 1
        name: other
        steps:
          - {id: a, provider: membrane, dispatch: {key: k}, input: {c: "{{ vars.channel }}"}}
    """, "other.yml")
    ok = run_cli(["validate", str(first), str(second), "--var", "channel=C1"], cwd=tmp_path)
    assert ok.code == 0, ok.stderr  # one of them uses it
    typo = run_cli(["validate", str(first), str(second), "--var", "chanel=C1"], cwd=tmp_path)
    assert typo.code == 2
    assert "(command line): --var chanel: none of the runbooks validated declares vars.chanel " \
           "under vars: or uses it (did you mean 'channel'?)" in typo.stderr


def test_vars_files_repeat_later_wins_key_by_key(write, tmp_path: Path, emulator: Emulator,
                                                 membrane_env: dict[str, str]) -> None:
    path = two_steps(write, "{{ vars.name }} {{ vars.channel }}")
    first = write("email: a@example.com\nchannel: C-first\nname: first\n", "a.yml")
    second = write("channel: C-second\n", "b.yml")
    result = run_cli(["run", str(path), "--vars-file", str(first), "--vars-file", str(second),
                      "--var", "name=flag"], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    assert result.manifest["vars"] == {"email": "a@example.com", "name": "flag", "channel": "C-second"}
    assert [b["input"] for b in act_bodies(emulator)] == [
        {"email": "a@example.com"}, {"text": "flag C-second"}]


def test_run_prints_validation_warnings(write, tmp_path: Path, emulator: Emulator,
                                        membrane_env: dict[str, str]) -> None:
    path = write("""
        version: 1
        name: warns
        steps:
          - {id: a, provider: membrane, dispatch: {key: k}, input: {flag: yes}}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0
    assert f"{path}:4:" in result.stderr and "warning:" in result.stderr and "'yes'" in result.stderr


# -- 3. one pre-flight round --------------------------------------------------------------------


def test_every_secret_and_credential_problem_at_once(write, tmp_path: Path, emulator: Emulator) -> None:
    path = write("""
        version: 1
        name: creds
        providers:
          crm: {type: membrane, token: "{{ secrets.CRM_TOKEN }}"}
          chat: {type: pipedream, project_id: proj_abc, environment: production, external_user_id: u1}
          web: {type: http, headers: {Authorization: "Bearer {{ secrets.WEB_TOKEN }}"}}
        steps:
          - {id: a, provider: crm, dispatch: {key: k}}
          - {id: b, provider: chat, dispatch: {id: slack-send-message}}
          - {id: c, provider: web, dispatch: {api: {url: "https://example.com/x"}}}
          - {id: d, provider: membrane, dispatch: {key: k}}
    """)
    env = base_env(PIPEDREAM_BASE_URL=emulator.url)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert result.code == 2
    err = result.stderr
    assert "secret 'CRM_TOKEN' is not set" in err and "secret 'WEB_TOKEN' is not set" in err
    assert "pipedream provider 'chat': no credentials" in err
    assert "membrane provider 'membrane' has no credentials" in err
    assert sent(emulator) == []


def test_wrong_pipedream_secret_is_found_before_the_membrane_steps(
        write, tmp_path: Path, emulator: Emulator) -> None:
    path = write("""
        version: 1
        name: mixed
        providers:
          chat: {type: pipedream, project_id: proj_abc, environment: production, external_user_id: u1}
        steps:
          - {id: contact, provider: membrane, dispatch: {key: create-contact}}
          - {id: notify, provider: chat, dispatch: {id: slack-send-message}}
    """)
    env = base_env(MEMBRANE_BASE_URL=emulator.url, MEMBRANE_TOKEN="t0ken-for-tests",
                   PIPEDREAM_BASE_URL=emulator.url, PIPEDREAM_CLIENT_ID="cid",
                   PIPEDREAM_CLIENT_SECRET="invalid-secret-1234")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert result.code == 2
    assert "providers.chat: its credentials could not be proved before the first step" in result.stderr
    assert [r["path"] for r in sent(emulator)] == ["/v1/oauth/token"]  # the proof, no step
    assert "invalid-secret-1234" not in result.stderr


def test_the_token_from_preflight_serves_the_steps(write, tmp_path: Path, emulator: Emulator) -> None:
    path = write("""
        version: 1
        name: pd
        providers:
          chat: {type: pipedream, project_id: proj_abc, environment: production, external_user_id: u1}
        steps:
          - {id: one, provider: chat, dispatch: {id: slack-send-message}}
          - {id: two, provider: chat, dispatch: {id: slack-send-message}}
    """)
    env = base_env(PIPEDREAM_BASE_URL=emulator.url, PIPEDREAM_CLIENT_ID="cid",
                   PIPEDREAM_CLIENT_SECRET="good-secret-5678")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    paths = [r["path"] for r in sent(emulator)]
    assert paths[0] == "/v1/oauth/token" and paths.count("/v1/oauth/token") == 1
    # then run's remote input check (the action's definition, once for both steps), then the steps:
    # all with the token of the exchange
    assert paths[1:] == ["/v1/connect/proj_abc/actions/slack-send-message"] + ["/v1/connect/proj_abc/actions/run"] * 2
    assert len({r["headers"]["authorization"] for r in sent(emulator)[1:]}) == 1


# -- 4. located run-time errors -----------------------------------------------------------------


def test_runtime_errors_name_file_line_and_column(write, tmp_path: Path, emulator: Emulator,
                                                  membrane_env: dict[str, str]) -> None:
    path = write("""
        version: 1
        name: located
        steps:
          - id: contact
            provider: membrane
            dispatch: {key: create-contact}
            assert:
              - "steps.contact.output.id is defined"
          - id: greet
            provider: membrane
            continue_on_error: true
            dispatch: {key: send}
            input: {text: "{{ steps.contact.output.nothing.here }}"}
          - id: check
            provider: membrane
            continue_on_error: true
            dispatch: {key: check}
            assert:
              - "steps.check.status == 'failed'"
          - id: broken
            provider: membrane
            dispatch: {key: fail-500}
    """)
    junit, summary = tmp_path / "j.xml", tmp_path / "s.md"
    result = run_cli(["run", str(path), "--junit", str(junit), "--summary", str(summary)],
                     cwd=tmp_path, env=membrane_env)
    assert result.code == 1
    errors = {s["id"]: s["error"] for s in result.manifest["steps"] if s["error"]}
    assert errors["greet"]["type"] == "template"
    assert errors["greet"]["location"] == where(path, '"{{ steps.contact.output.nothing')
    assert errors["check"]["type"] == "assertion"
    assert errors["check"]["location"] == where(path, "\"steps.check.status == 'failed'\"")
    assert errors["broken"]["type"] == "server_error"
    assert errors["broken"]["location"] == where(path, "fail-500")
    for location in (e["location"] for e in errors.values()):
        assert f"      {location}: " in result.stdout
        assert f'message="{location}: ' in junit.read_text()
        assert f"at `{location}`" in summary.read_text()


def test_per_attempt_timeout_is_named_as_such(write, tmp_path: Path, emulator: Emulator,
                                              membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "slow"}, delay=1.0, times=1)
    path = write("""
        version: 1
        name: slow
        steps:
          - {id: s, provider: membrane, dispatch: {key: slow}, timeout: 500ms}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 1
    assert result.step("s")["error"]["message"] == "no answer within the per-attempt timeout of 0.5s"


# -- 5. machine problems are not bugs -----------------------------------------------------------


def test_unwritable_outputs_are_exit_2_before_anything_is_sent(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    path = two_steps(write, "hi")
    a_file = write("not a folder", "plain.txt")
    cases = [
        (["--manifest", "/proc/m.json"], "--manifest /proc/m.json: cannot write there"),
        (["--manifest", f"{a_file}/m.json"], f"--manifest {a_file}/m.json: cannot create the folder"),
        (["--junit", "/proc/j.xml"], "--junit /proc/j.xml: cannot write there"),
        (["--summary", "/proc/s.md"], "--summary /proc/s.md: cannot write there"),
    ]
    for args, message in cases:
        result = run_cli(["run", str(path), *args], cwd=tmp_path, env=membrane_env)
        assert result.code == 2, (args, result.stderr)
        assert message in result.stderr and "nothing was sent" in result.stderr, result.stderr
        assert "bug" not in result.stderr
    assert sent(emulator) == []


def test_unwritable_working_directory(write, tmp_path: Path, emulator: Emulator,
                                      membrane_env: dict[str, str]) -> None:
    path = two_steps(write, "hi")
    result = run_cli(["run", str(path)], cwd=Path("/proc"), env=membrane_env, manifest=False)
    assert result.code == 2, result.stderr
    assert "the manifest .runbook/runs/" in result.stderr and "cannot create the folder" in result.stderr
    assert sent(emulator) == []


def test_emulate_on_a_port_in_use_is_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "engine", "emulate", "--port", str(port)],
                              cwd=tmp_path, env=base_env(), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "bug" not in proc.stderr


# -- 6. resume and interrupt correctness --------------------------------------------------------


def test_finally_steps_always_run_on_resume(write, tmp_path: Path, emulator: Emulator,
                                            membrane_env: dict[str, str]) -> None:
    path = write("""
        version: 1
        name: resumable
        steps:
          - {id: a, provider: membrane, dispatch: {key: one}}
          - {id: b, provider: membrane, dispatch: {key: two}}
        finally:
          - {id: notify, provider: membrane, dispatch: {key: notify}}
    """)
    emulator.add_fault({"action": "two"}, status=503, times=1)
    first = run_cli(["run", str(path), "--manifest", str(tmp_path / "first.json")],
                    cwd=tmp_path, env=membrane_env)
    assert first.code == 1
    emulator.clear_requests()
    second = run_cli(["run", str(path), "--resume", str(tmp_path / "first.json")],
                     cwd=tmp_path, env=membrane_env)
    assert second.code == 0, second.stderr
    assert [b["key"] for b in act_bodies(emulator)] == ["two", "notify"]
    assert "reused_from" not in second.step("notify")
    assert second.step("a")["reused_from"]


def test_http_under_emulate_records_the_named_url_and_resumes_and_replays(
        write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: web
        providers:
          web: {type: http, base_url: "https://api.example.com/v1"}
        steps:
          - {id: list, provider: web, dispatch: {api: {path: /items}}}
          - {id: one, provider: web, dispatch: {api: {url: "https://other.example.com/x?y=1"}}}
          - {id: later, provider: web, dispatch: {api: {path: "/n/{{ steps.list.exports.status }}"}}}
    """)
    first = run_cli(["run", str(path), "--emulate", "--manifest", str(tmp_path / "first.json")],
                    cwd=tmp_path)
    assert first.code == 0, first.stderr
    recorded = json.loads((tmp_path / "first.json").read_text())
    assert [s["request"]["url"] for s in recorded["steps"]] == [
        "https://api.example.com/v1/items", "https://other.example.com/x?y=1",
        "https://api.example.com/v1/n/200"]
    assert recorded["steps"][0]["output"]["path"] == "/api.example.com/v1/items"  # the emulator's echo
    resumed = run_cli(["run", str(path), "--emulate", "--resume", str(tmp_path / "first.json")],
                      cwd=tmp_path)
    assert resumed.code == 0, resumed.stderr
    assert all(s.get("reused_from") for s in resumed.manifest["steps"])
    replayed = run_cli(["replay", str(tmp_path / "first.json"), "--emulate"], cwd=tmp_path)
    assert replayed.code == 0, replayed.stdout + replayed.stderr
    assert [s["status"] for s in replayed.manifest["steps"]] == ["succeeded"] * 3
