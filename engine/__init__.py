"""runbook: a declarative YAML runbook engine.

Data flow: ``cli`` -> ``loader`` -> ``validation`` -> ``model`` -> ``runner``
(-> ``templating``, ``providers``) -> ``manifest`` -> exit code.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
