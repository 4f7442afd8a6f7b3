"""Validation of a loaded runbook, one module per job, behind :func:`check`:

- :mod:`~engine.validation.schema`: the JSON Schema pass (the runbook schema, each provider's
  config and options schemas), every error located and named by its field;
- :mod:`~engine.validation.semantics`: ids, references, providers, dispatch styles, options,
  durations and the static checks of templates;
- :mod:`~engine.validation.lint`: warnings, what is valid but probably not what was meant
  (YAML 1.1 habits, ``vars.X`` that nothing sets);
- :mod:`~engine.validation.build`: the frozen :class:`~engine.model.Runbook` of a runbook that passed.

Every pass gathers every problem of the file, each located at FILE:LINE:COL and named by a
breadcrumb (``steps[1] (notify) with.version``), so a user sees all mistakes at once.
:func:`load_runbook`, :func:`load_checked` and :func:`check_file` are the front half of the
pipeline: load -> check -> build. Nothing here imports httpx or a provider's code.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from engine.errors import LocatedErrors, Problem
from engine.loader import Document, load_file, load_text
from engine.model import Runbook
from engine.schemas import YAML11_BOOLEANS, suggest
from engine.templating import Templates
from engine.validation.build import build_runbook, built
from engine.validation.common import label
from engine.validation.lint import lint_document
from engine.validation.schema import runbook_problems, schema_problems
from engine.validation.semantics import MAX_DURATION, semantic_problems

__all__ = [
    "check",
    "validate_document",
    "lint_document",
    "build_runbook",
    "load_runbook",
    "load_checked",
    "check_file",
    "schema_problems",
    "suggest",
    "label",
    "YAML11_BOOLEANS",
    "MAX_DURATION",
]


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def check(doc: Document, templates: Templates, *, lint: bool = True, provided_vars: Iterable[str] = (),
          strict: bool = False, cli_vars: Iterable[str] = (), known_vars: set[str] | None = None,
          stack: tuple[str, ...] | None = None) -> list[Problem]:
    """Every problem of a loaded runbook, sorted: the schema and semantic passes' errors, the
    declared inputs' (and, when ``provided_vars`` is a mapping, the values given them) and, with
    ``lint``, the linter's warnings (see :func:`~engine.validation.lint.lint_document` for
    ``provided_vars``, ``strict``, ``cli_vars`` and ``known_vars``)."""
    problems = validate_document(doc, templates)
    if isinstance(doc.data, dict) and any(isinstance(step, dict) and "runbook" in step
                                          for section in ("steps", "finally")
                                          for step in _list(doc.data.get(section))):
        # the runbooks it calls, checked with it (``stack``: the chain of calls so far)
        from engine.validation.calls import call_problems  # only a runbook that calls one

        problems += call_problems(doc, lambda child, stack: check(child, templates, lint=False, stack=stack),
                                  stack or (os.path.realpath(doc.source.file),))
    if isinstance(doc.data, dict) and doc.data.get("inputs") and not problems:  # shapes: the schema's
        from engine.validation.inputs import input_problems  # only a runbook with inputs

        given = provided_vars if isinstance(provided_vars, Mapping) else None
        problems += input_problems(doc, given, strict=strict)
    if lint:
        problems += lint_document(doc, templates, provided_vars, strict=strict, cli_vars=cli_vars,
                                  known_vars=known_vars)
    return sorted(problems)


def validate_document(doc: Document, templates: Templates) -> list[Problem]:
    """Every error of a loaded runbook: schema errors, then semantic ones (sorted, once each)."""
    if not isinstance(doc.data, dict):
        return [doc.source.problem((), "a runbook is a mapping with version, name and steps")]
    problems = runbook_problems(doc) + semantic_problems(doc, templates)
    unique = {(p.line, p.col, p.message): p for p in problems}
    return sorted(unique.values())


def check_file(path: str, templates: Templates | None = None, *,
               provided_vars: Iterable[str] = (), known_vars: set[str] | None = None) -> list[Problem]:
    """Every problem of one file, errors and warnings, sorted (what ``validate`` prints).

    ``known_vars``, when given, gets the variables the file declares or uses.
    """
    templates = templates or Templates()
    try:
        doc = load_file(path)
    except LocatedErrors as exc:
        return list(exc.problems)
    return check(doc, templates, provided_vars=provided_vars, known_vars=known_vars)


def load_checked(path: str, templates: Templates, *, provided_vars: Iterable[str] = (),
                 strict: bool = False, cli_vars: Iterable[str] = (),
                 sparse: bool = False) -> tuple[Runbook, list[Problem]]:
    """Load, validate and build ``path``; return the runbook and the warnings.

    Errors raise :class:`LocatedErrors` (with the warnings, so nothing is lost). ``run`` and
    ``plan`` pass ``strict`` and the ``--var`` names, because they know every variable.

    ``run`` passes ``sparse``: its runbook keeps only the positions a run reports
    (:class:`~engine.loader.SparseSourceMap`; the full map of a long runbook costs more memory
    than the runbook). The checks look at that load; only if they find anything are they made
    again on a full load of the same text, so that every problem is located and worded as ever.
    """
    doc = load_file(path, sparse=sparse)
    problems = check(doc, templates, provided_vars=provided_vars, strict=strict, cli_vars=cli_vars)
    if problems and sparse:
        problems = check(load_text(doc.text, path), templates, provided_vars=provided_vars, strict=strict,
                         cli_vars=cli_vars)
    if any(p.severity == "error" for p in problems):
        raise LocatedErrors(problems)
    return built(doc, path), problems


def load_runbook(path: str, templates: Templates | None = None) -> tuple[Runbook, Templates]:
    """Load, validate and build ``path``; raise :class:`LocatedErrors` with every problem."""
    templates = templates or Templates()
    doc = load_file(path, sparse=True)  # see load_checked
    if check(doc, templates, lint=False):
        raise LocatedErrors(check(load_text(doc.text, path), templates, lint=False))
    return built(doc, path), templates
