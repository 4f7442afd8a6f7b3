"""Everything checked after validation and before the first dispatch.

Missing secrets (all of them at once), provider configurations rendered and
checked, credentials present: any problem here is exit 2 with nothing sent.
With ``--emulate`` every provider that can be is pointed at the emulator with
dummy credentials, and secrets that are not set get placeholder values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.errors import LocatedErrors, Problem
from engine.model import ErrorType, Runbook
from engine.providers.base import Provider, ProviderError
from engine.providers.registry import provider_class, type_info
from engine.redaction import Redactor
from engine.schemas import checker, schema_messages
from engine.templating import TemplateError, Templates, field_name, iter_templates, render_value, step_templates

if TYPE_CHECKING:
    from engine.loader import SourceMap
    from engine.remote_check import RemoteCheck, Resolved

__all__ = ["Prepared", "preflight", "secret_references"]


class Prepared(NamedTuple):
    """Providers ready to send, the redactor that knows every secret, and notices."""

    providers: dict[str, Provider]
    redactor: Redactor
    environ: dict[str, str]
    notices: list[str]
    targets: dict[str, str]
    emulator_url: str | None = None  # with --emulate: where a called runbook's providers go too
    resolved: Mapping[str, Resolved] | None = None  # with the remote check: step id -> its action's definition


def _used_providers(runbook: Runbook) -> list[str]:
    names: dict[str, None] = {}
    for step in runbook.steps + runbook.finally_steps:
        if step.child is None:  # a call's providers are the called runbook's
            names.setdefault(step.provider)
    return list(names)


def _templated_fields(runbook: Runbook, templates: Templates) -> Iterator[tuple[tuple[Any, ...], str]]:
    for step in runbook.steps + runbook.finally_steps:
        yield from step_templates(step.fields(), templates, step.path)
    yield from iter_templates(runbook.outputs, ("outputs",))
    for name in _used_providers(runbook):
        spec = runbook.providers[name]
        yield from iter_templates(spec.config, spec.path)


def _called(runbook: Runbook) -> Iterator[Runbook]:
    """Every runbook ``runbook`` calls, however deep (each once)."""
    seen: set[str] = set()
    stack = [runbook]
    while stack:
        current = stack.pop()
        for step in current.steps + current.finally_steps:
            if step.child is not None and step.child.path not in seen:
                seen.add(step.child.path)
                yield step.child
                stack.append(step.child)


def secret_references(runbook: Runbook, templates: Templates) -> dict[str, tuple[Any, ...]]:
    """Every secret a template names by constant, with where it is first named."""
    found: dict[str, tuple[Any, ...]] = {}
    for path, src in _templated_fields(runbook, templates):
        for name in templates.compile(src).analysis.secrets:
            found.setdefault(name, path)
    return found


def _provider_position(runbook: Runbook, name: str) -> tuple[Any, ...]:
    spec = runbook.providers[name]
    if spec.path:
        return spec.path
    for step in runbook.steps + runbook.finally_steps:
        if step.provider == name:
            return step.path + ("provider",)
    return ()


def preflight(
    runbook: Runbook,
    templates: Templates,
    *,
    vars: Mapping[str, Any],
    environ: Mapping[str, str],
    run_info: Mapping[str, Any],
    emulator_url: str | None = None,
    redactor: Redactor | None = None,
    remote: RemoteCheck | None = None,
) -> Prepared:
    """Check secrets, build every provider the run uses and prove the credentials that can be
    proved without side effects (the Pipedream token exchange), all in one pass: every problem
    of every provider is raised together as :class:`LocatedErrors`, before step 1 is sent.
    The secrets of the runbooks it calls are checked too (their providers are built when the
    call starts, from the inputs it is given: :func:`preflight` of the called runbook, with
    the caller's ``redactor``).

    ``remote``: check the inputs against the actions' own schemas (engine/remote_check.py)
    with these settings; None: no check (``--no-remote-check``, replay, a Temporal worker)."""
    check = _Check(runbook, templates, environ, emulator_url, redactor if redactor is not None else Redactor())
    missing = check.secrets()
    context = {"vars": vars, "secrets": check.env, "env": check.env, "run": run_info}
    providers: dict[str, Provider] = {}
    for name in _used_providers(runbook):
        provider = check.provider(name, context, missing)
        if provider is not None:
            providers[name] = provider
    for name, provider in providers.items():
        problem = _prove_credentials(runbook, name, provider)
        if problem:
            check.problem(_provider_position(runbook, name), problem)
    resolved = check.remote(providers, remote) if not check.problems and remote is not None else None
    targets = check.targets(providers)
    if check.problems:
        for provider in providers.values():
            provider.close()
        raise LocatedErrors(check.problems)
    return Prepared(providers, check.redactor, check.env, check.notices, targets, emulator_url, resolved)


class _Check:
    """One pre-flight pass over a runbook: the environment it runs with (placeholder secrets
    under ``--emulate``) and the problems and notices found so far, each message redacted."""

    def __init__(self, runbook: Runbook, templates: Templates, environ: Mapping[str, str],
                 emulator_url: str | None, redactor: Redactor) -> None:
        self.runbook = runbook
        self.templates = templates
        self.env = dict(environ)
        self.emulator_url = emulator_url
        self.redactor = redactor
        self.problems: list[Problem] = []
        self.notices: list[str] = []

    def problem(self, path: tuple[Any, ...], message: str, source: SourceMap | None = None) -> None:
        """A problem at ``path`` of the runbook (or of ``source``); a message may quote a secret."""
        self.problems.append((source or self.runbook.source).problem(path, self.redactor.text(message)))

    def secrets(self) -> dict[str, tuple[Any, ...]]:
        """Check every secret the runbook and the runbooks it calls name; teach the redactor their
        values. Returns the ones not set (under ``--emulate``: none, each given a placeholder)."""
        runbook, env = self.runbook, self.env
        refs = secret_references(runbook, self.templates)
        missing = {name: path for name, path in refs.items() if name not in env}
        for child in _called(runbook):  # a called runbook's secrets: known before step 1 too
            for name, path in secret_references(child, self.templates).items():
                if name not in env and name not in missing:
                    if self.emulator_url is not None:
                        missing[name] = path
                    else:
                        self.problem(path, f"secret {name!r} is not set (this runbook is called by {runbook.path}): "
                                           f"export the environment variable {name}", child.source)
                refs.setdefault(name, path)
        if missing and self.emulator_url is not None:
            for name in missing:
                env[name] = f"emulated-{name.lower()}"
            self.notices.append("--emulate: placeholder values for unset secrets: " + ", ".join(sorted(missing)))
            missing = {}
        for name, path in sorted(missing.items()):
            self.problem(path, f"secret {name!r} is not set: export the environment variable {name}")
        for name in refs:
            self.redactor.add(env.get(name))
        return missing

    def provider(self, name: str, context: Mapping[str, Any], missing: Mapping[str, Any]) -> Provider | None:
        """Provider ``name`` built from its rendered, checked configuration (None: a problem)."""
        spec = self.runbook.providers[name]
        position = _provider_position(self.runbook, name)
        if any(secret in missing for _, src in iter_templates(spec.config)
               for secret in self.templates.compile(src).analysis.secrets):
            return None  # its configuration needs a secret that is not set: reported already
        cls = provider_class(spec.type)
        try:
            # every value rendered from a secret (`| upper`, `| b64encode`, ...) is learned, so a
            # service that echoes a header back cannot leak it
            config, _ = render_value(spec.config, self.templates, context, ("providers", name), self.redactor.add)
        except TemplateError as exc:
            self.problem(position, str(exc))
            return None
        problem = _check_config(spec.type, config, ("providers", name))
        if problem:
            self.problem(position, problem)
            return None
        if config.get("insecure") is True:
            self.notices.append(f"warning: providers.{name}: insecure: true - TLS certificates are NOT verified "
                                "for its requests")
        try:
            if self.emulator_url is not None:
                emulated = cls.emulated_config(config, self.emulator_url)
                config = config if emulated is None else emulated
            return cls(name, config, env=self.env, redactor=self.redactor)
        except ProviderError as exc:
            self.problem(position, f"providers.{name}: {exc.message}" if exc.type is ErrorType.PLUGIN else exc.message)
            return None

    def remote(self, providers: Mapping[str, Provider], remote: RemoteCheck) -> Mapping[str, Resolved]:
        """The remote input check's problems; what each step's action resolved to."""
        import dataclasses

        from engine.remote_check import check_runbook  # imported only when it runs

        if self.emulator_url is not None:  # its catalog is local, and on another port each run: not cached
            remote = dataclasses.replace(remote, cached=False)
        checked = check_runbook(self.runbook, providers, remote)
        self.problems.extend(Problem(p.file, p.line, p.col, self.redactor.text(p.message), p.severity)
                             for p in checked.problems)
        return checked.resolved

    def targets(self, providers: Mapping[str, Provider]) -> dict[str, str]:
        """Where each provider sends (part of each step's request_sha256)."""
        targets: dict[str, str] = {}
        for name, provider in providers.items():
            try:
                targets[name] = f"emulator {self.runbook.providers[name].type}" if self.emulator_url is not None \
                    else provider.target()
            except ProviderError as exc:  # a plugin's target() that raised
                self.problem(_provider_position(self.runbook, name), f"providers.{name}: {exc.message}")
        return targets


#: How long a credential proof may take when no step of the provider sets a timeout.
PROOF_TIMEOUT = 30.0


def _prove_credentials(runbook: Runbook, name: str, provider: Provider) -> str | None:
    """Ask a provider to prove its credentials now (``verify_credentials``: most types have
    nothing to prove without side effects, and do nothing)."""
    timeouts = [s.timeout for s in runbook.steps + runbook.finally_steps
                if s.provider == name and s.timeout is not None]
    try:
        provider.verify_credentials(min(timeouts) if timeouts else PROOF_TIMEOUT)
    except ProviderError as exc:
        return f"providers.{name}: its credentials could not be proved before the first step: {exc.message}"
    return None


def _check_config(type_name: str, config: Any, base: tuple[str, ...]) -> str | None:
    """What is wrong with a rendered provider configuration, worded as validation words it
    (``providers.pd.project_id: ...``)."""
    info = type_info(type_name)
    if info is None:
        return None
    messages = schema_messages(checker(info.config_schema), config, base)
    return "; ".join(f"{field_name(m.field)}: {m.text}" for m in messages) or None
