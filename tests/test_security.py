"""Hostile input and careless setups: verified TLS, bounded templates, redacted secrets, safe files."""

from __future__ import annotations

import http.server
import json
import os
import ssl
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.files import atomic_write
from engine.redaction import Redactor
from tests.conftest import ROOT, base_env, install_crash_plugin, run_cli

TLS_DIR = ROOT / "tests" / "data" / "tls"


# -- TLS is always verified ---------------------------------------------------------------------


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the handler's API
        body = b'{"hello": "tls"}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def https_url() -> Iterator[str]:
    """An HTTPS server on loopback with a self-signed certificate (tests/data/tls)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(TLS_DIR / "cert.pem", TLS_DIR / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _tls_runbook(write, url: str, block: str) -> Path:
    return write(f"""
        version: 1
        name: tls
        providers:
          web: {{type: http{block}}}
        steps:
          - {{id: get, provider: web, dispatch: {{api: {{url: "{url}/x"}}}}}}
    """)


@pytest.mark.parametrize("block", ["", ', base_url: "http://127.0.0.1:9"'])
def test_a_self_signed_certificate_is_refused(write, tmp_path: Path, https_url: str, block: str) -> None:
    """Verification does not depend on the provider's base_url: an https URL is always verified."""
    result = run_cli(["run", str(_tls_runbook(write, https_url, block))], cwd=tmp_path)
    assert result.code == 1
    error = result.step("get")["error"]
    assert error["type"] == "connection" and "CERTIFICATE_VERIFY_FAILED" in error["message"]


def test_ca_bundle_and_ssl_cert_file_trust_a_private_ca(write, tmp_path: Path, https_url: str) -> None:
    bundle = TLS_DIR / "cert.pem"
    named = run_cli(["run", str(_tls_runbook(write, https_url, f", ca_bundle: {bundle}"))], cwd=tmp_path)
    assert named.code == 0, named.stdout + named.stderr
    assert named.step("get")["output"] == {"hello": "tls"}
    from_env = run_cli(["run", str(_tls_runbook(write, https_url, ""))], cwd=tmp_path,
                       env=base_env(SSL_CERT_FILE=str(bundle)))
    assert from_env.code == 0, from_env.stdout + from_env.stderr
    missing = run_cli(["run", str(_tls_runbook(write, https_url, ", ca_bundle: /nonexistent.pem"))],
                      cwd=tmp_path)
    assert missing.code == 2 and "ca_bundle /nonexistent.pem is not a file" in missing.stderr


def test_insecure_is_the_only_opt_out_and_warns(write, tmp_path: Path, https_url: str) -> None:
    result = run_cli(["run", str(_tls_runbook(write, https_url, ", insecure: true"))], cwd=tmp_path)
    assert result.code == 0, result.stdout + result.stderr
    assert "warning: providers.web: insecure: true - TLS certificates are NOT verified" in result.stderr


def test_emulate_refuses_a_host_beyond_loopback(tmp_path: Path) -> None:
    refused = subprocess.run([sys.executable, "-m", "engine", "emulate", "--host", "0.0.0.0", "--port", "0"],
                             cwd=tmp_path, env=base_env(), capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert "--host 0.0.0.0 is not a loopback address" in refused.stderr and "--allow-remote" in refused.stderr
    proc = subprocess.Popen([sys.executable, "-m", "engine", "emulate", "--host", "0.0.0.0", "--port", "0",
                             "--allow-remote"], cwd=tmp_path, env=base_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in proc.stdout.readline()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "warning: serving the emulator on 0.0.0.0" in err


# -- templates: data only, bounded --------------------------------------------------------------

BOMBS = {
    "repeat_text": "{{ 'a' * 10**9 }}",
    "repeat_list": "{{ [0] * 10**8 }}",
    "center": "{{ 'x' | center(10**9) }}",
    "indent": "{{ 'x' | indent(10**9) }}",
    "format_width": "{{ '%999999999s' | format('x') }}",
    "method_width": "{{ '{:>999999999}'.format('x') }}",
    "replace": "{{ ('a' * 1000) | replace('a', 'a' * 100000) }}",
    "power": "{{ 10 ** 10 ** 10 }}",
    "loops": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "output": "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
    "macro": "{% macro m(n) %}{{ m(n) }}{{ m(n) }}{% endmacro %}{{ m(1) }}",
    "not_data": "{% macro m() %}{% endmacro %}{{ m }}",
    "not_data_in_text": "a {% macro m() %}{% endmacro %}{{ m }}",
    "infinity": "{{ 1e308 * 10 }}",
    "huge_int": "{{ 2 ** 70 }}",
    "int_key": "{{ {1: 2} }}",
}


def test_template_bombs_fail_cleanly(write, tmp_path: Path) -> None:
    steps = "\n".join(
        f"  - {{id: {name}, provider: membrane, continue_on_error: true, dispatch: {{key: k}}, "
        f"input: {{x: {json.dumps(source)}}}}}"
        for name, source in BOMBS.items()
    )
    path = write(f"version: 1\nname: bombs\nsteps:\n{steps}\n")
    result = run_cli(["run", str(path), "--emulate"], cwd=tmp_path, timeout=120)
    assert result.code == 1, result.stderr
    assert "bug" not in result.stderr
    errors = {s["id"]: s["error"] for s in result.manifest["steps"]}
    assert set(errors) == set(BOMBS)
    for name, error in errors.items():
        assert error is not None and error["type"] == "template", (name, error)
        assert error["location"].startswith(f"{path}:")
    assert "RUNBOOK_TEMPLATE_MAX_SIZE" in errors["repeat_text"]["message"]
    assert "ran for more than 0.5s (RUNBOOK_TEMPLATE_SECONDS)" in errors["loops"]["message"]
    assert "renders to a Macro object, which is not data" in errors["not_data_in_text"]["message"]
    assert "not a JSON number" in errors["infinity"]["message"]
    assert result.manifest["steps"][0]["attempts"] == []  # nothing was sent


def test_limits_are_configurable(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: small
        steps:
          - {id: a, provider: membrane, dispatch: {key: k}, input: {x: "{{ 'a' * 2000 }}"}}
    """)
    small = run_cli(["run", str(path), "--emulate"], cwd=tmp_path,
                    env=base_env(RUNBOOK_TEMPLATE_MAX_SIZE="1000"))
    assert small.code == 1 and "over the limit of 1,000" in small.step("a")["error"]["message"] or \
        "more than 1,000" in small.step("a")["error"]["message"]
    default = run_cli(["run", str(path), "--emulate"], cwd=tmp_path)
    assert default.code == 0


def test_jinja_globals_a_runbook_does_not_need_are_gone(write, tmp_path: Path) -> None:
    for name in ("cycler", "joiner", "lipsum", "namespace"):
        path = write(f"""
            version: 1
            name: globals
            steps:
              - {{id: a, provider: membrane, dispatch: {{key: k}}, input: {{x: "{{{{ {name}() }}}}"}}}}
        """)
        result = run_cli(["validate", str(path)], cwd=tmp_path)
        assert result.code == 2 and f"unknown name {name!r}" in result.stderr


# -- secrets ------------------------------------------------------------------------------------

SECRET = "s3cr3t-Value-42"


def _manifest_text(result) -> str:
    return result.manifest_path.read_text() + result.stdout + result.stderr


def test_provider_headers_from_a_secret_are_scrubbed_from_echoes(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: headers
        providers:
          web:
            type: http
            base_url: https://api.example.com
            headers:
              X-Upper: "{{ secrets.API_KEY | upper }}"
              X-Reverse: "{{ secrets.API_KEY | reverse }}"
              X-Tail: "{{ secrets.API_KEY[1:] }}"
              X-Hash: "{{ secrets.API_KEY | sha256 }}"
              X-Json: "{{ secrets.API_KEY | tojson }}"
        steps:
          - {id: echo, provider: web, dispatch: {api: {path: /echo}}}
    """)
    result = run_cli(["run", str(path), "--emulate", "--json"], cwd=tmp_path, env=base_env(API_KEY=SECRET))
    assert result.code == 0, result.stderr
    import hashlib

    text = _manifest_text(result)
    for form in (SECRET, SECRET.upper(), SECRET[::-1], SECRET[1:], hashlib.sha256(SECRET.encode()).hexdigest()):
        assert form not in text, form
    headers = result.step("echo")["output"]["headers"]
    assert headers["x-upper"] == "***" and headers["x-hash"] == "***"


def test_a_secret_as_a_list_and_short_secrets_are_scrubbed(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: short
        steps:
          - id: echo
            provider: membrane
            dispatch: {key: echo}
            input:
              chars: "{{ secrets.LONG | list }}"
              pin: "{{ secrets.PIN }}"
              tiny: "{{ secrets.TINY }}"
              bearer: "{{ 'Bearer ' ~ secrets.PIN }}"
    """)
    env = base_env(LONG=SECRET, PIN="pw12x", TINY="q7")
    result = run_cli(["run", str(path), "--emulate", "--json"], cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    text = _manifest_text(result)
    assert json.dumps(list(SECRET), separators=(",", ":")) not in text
    assert json.dumps(list(SECRET)) not in text
    assert "pw12x" not in text and '"q7"' not in text
    output = result.step("echo")["output"]
    assert output["chars"] == "***" and output["pin"] == "***" and output["tiny"] == "***"
    assert output["bearer"] == "***"  # the rendered "Bearer pw12x" is itself learned as a secret


def test_redactor_rules_for_short_values() -> None:
    redactor = Redactor()
    redactor.add("pw12x")  # 4-7 characters: whole tokens
    redactor.add("q7")  # 1-3 characters: whole strings only
    assert redactor.text("Bearer pw12x") == "Bearer ***"
    assert redactor.text("xpw12xy") == "xpw12xy"
    assert redactor.scrub({"a": "q7", "b": "q7q7 is fine"}) == {"a": "***", "b": "q7q7 is fine"}


def test_an_error_of_a_template_that_reads_secrets_is_withheld(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: withheld
        steps:
          - {id: a, provider: membrane, dispatch: {key: k}, input: {x: "{{ {}[secrets.LONG | reverse] }}"}}
    """)
    result = run_cli(["run", str(path), "--emulate"], cwd=tmp_path, env=base_env(LONG=SECRET))
    assert result.code == 1
    assert SECRET[::-1] not in _manifest_text(result)
    assert "details are withheld: this template reads secrets" in result.step("a")["error"]["message"]


def test_an_internal_error_prints_no_secret(tmp_path: Path) -> None:
    (tmp_path / "crash.yml").write_text(textwrap.dedent("""\
        version: 1
        name: crash
        steps:
          - {id: boom, provider: membrane, dispatch: {id: x}, input: {key: "{{ secrets.LONG | reverse }}"}}
    """))
    for args in (["run", "crash.yml", "--emulate"], ["run", "crash.yml", "--emulate", "--debug"]):
        result = run_cli(args, cwd=tmp_path, env=base_env(LONG=SECRET), module="tests.planted_bug")
        assert result.code == 3
        assert "engine bug holding ***" in result.stderr, result.stderr
        assert SECRET not in result.stderr and SECRET not in _manifest_text(result)


def test_a_plugin_s_failure_prints_no_secret(tmp_path: Path) -> None:
    env = install_crash_plugin(tmp_path, LONG=SECRET)
    (tmp_path / "crash.yml").write_text(textwrap.dedent("""\
        version: 1
        name: crash
        steps:
          - {id: boom, provider: crash, dispatch: {id: x}, input: {key: "{{ secrets.LONG | reverse }}"}}
    """))
    result = run_cli(["run", "crash.yml"], cwd=tmp_path, env=env)
    assert result.code == 1
    assert "plugin bug holding ***" in result.stdout, result.stdout
    assert "plugin bug holding ***" in result.step("boom")["error"]["message"]
    assert SECRET not in result.stdout + result.stderr and SECRET not in _manifest_text(result)


# -- files --------------------------------------------------------------------------------------


def test_reports_and_manifest_refuse_symbolic_links(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: links
        steps:
          - {id: a, provider: membrane, dispatch: {key: k}}
    """)
    target = tmp_path / "target.txt"
    target.write_text("keep me\n")
    for option in ("--summary", "--manifest", "--junit"):
        link = tmp_path / f"link{option}"
        link.symlink_to(target)
        result = run_cli(["run", str(path), "--emulate", option, str(link)], cwd=tmp_path)
        assert result.code == 2, result.stderr
        assert f"{option} {link}: is a symbolic link" in result.stderr
    assert target.read_text() == "keep me\n"


def test_atomic_write_never_follows_a_planted_temporary_name(tmp_path: Path) -> None:
    target = tmp_path / "victim.txt"
    target.write_text("keep me\n")
    path = tmp_path / "m.json"
    for name in (f"m.json.{os.getpid()}.tmp", "m.json.tmp", ".m.json.tmp"):  # names once predictable
        (tmp_path / name).symlink_to(target)
    atomic_write(str(path), b"{}\n")
    assert path.read_text() == "{}\n" and not path.is_symlink()
    assert target.read_text() == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink()) == ["m.json", "victim.txt"]


# -- requests httpx cannot send, durations no clock can wait ------------------------------------


def test_unsendable_urls_and_headers_fail_the_step_not_the_engine(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: unsendable
        providers:
          web: {type: http, base_url: "https://api.example.com"}
          odd: {type: http, base_url: "http://x\\x06"}
          accents: {type: http, base_url: "https://api.example.com", headers: {Accept: "é😀"}}
        steps:
          - {id: ctrl, provider: web, continue_on_error: true, dispatch: {api: {url: "http://example.com/\\x1e"}}}
          - {id: base, provider: odd, continue_on_error: true, dispatch: {api: {path: /x}}}
          - {id: header, provider: accents, continue_on_error: true, dispatch: {api: {path: /x}}}
          - id: step_header
            provider: web
            continue_on_error: true
            dispatch: {api: {path: /x, headers: {X-Name: "é"}}}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path)
    assert result.code == 1, result.stderr
    assert "bug" not in result.stderr
    for step in result.manifest["steps"]:
        assert step["status"] == "failed" and step["error"]["type"] == "configuration", step
        assert step["error"]["message"].startswith("cannot send ")


def test_durations_longer_than_a_year_are_validation_errors(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: forever
        run_timeout: 1e300
        steps:
          - {id: a, provider: membrane, dispatch: {id: x}, timeout: 1e17, retry: {attempts: 2, max_delay: 99999999h}}
    """)
    result = run_cli(["validate", str(path)], cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.count("is longer than a year") == 3
