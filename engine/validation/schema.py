"""The JSON Schema pass: the runbook schema, and each provider's config and options schemas.

The checkers and the wording of their errors are :mod:`engine.schemas`'; this pass places
each message in the file and names its field by a breadcrumb (``steps[1] (notify) with.version``).
"""

from __future__ import annotations

from typing import Any, Literal

from engine.errors import Problem
from engine.loader import Document, Path, SourceMap
from engine.providers.registry import TypeInfo
from engine.schemas import SchemaChecker, checker, schema_messages, validator
from engine.templating import is_template
from engine.validation.common import label

__all__ = ["schema_problems", "runbook_problems", "provider_problems"]


def schema_problems(
    schema_validator: SchemaChecker,
    instance: Any,
    source: SourceMap,
    data: Any,
    base: Path = (),
    *,
    templated: bool = False,
) -> list[Problem]:
    """Every JSON Schema error of ``instance`` (at ``base`` in ``data``) as located problems.

    With ``templated``, errors about a template string are left for run time,
    when the rendered value is checked against the same schema.
    """
    messages = schema_messages(schema_validator, instance, base, written=source.scalar_text,
                               skip=is_template if templated else None)
    return [source.problem(m.at, f"{label(data, m.field)}: {m.text}", key=m.key) for m in messages]


def runbook_problems(doc: Document) -> list[Problem]:
    """The runbook schema's errors of a document (a mapping)."""
    return schema_problems(validator("runbook.schema.json"), doc.data, doc.source, doc.data)


def provider_problems(doc: Document, info: TypeInfo, which: Literal["config", "options"], value: Any,
                      base: Path) -> list[Problem]:
    """The errors of a provider block (``config``) or a step's ``with:`` (``options``) against
    the provider type's schema; templated values are checked once rendered."""
    schema = info.config_schema if which == "config" else info.options_schema
    return schema_problems(checker(schema), value, doc.source, doc.data, base, templated=True)
