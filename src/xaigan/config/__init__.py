"""Run configuration: one typed schema (:class:`Config`) gives every key's default, type, allowed values, range
and one-line help; YAML files and ``key=value`` overrides are layered on it and validated in one pass.

Keys are flat. Unknown keys and invalid values are rejected before any work starts, with a message that names the
key and what is allowed. The CLI flags, ``xaigan train --help`` and ``docs/config.md`` are generated from the schema.
The guidance's keys (``alpha``, ``xai_use``, ...) are declared once, in :class:`xaigan.settings.GuidanceSettings`.
"""

from xaigan.config.checks import check_name
from xaigan.config.docs import markdown
from xaigan.config.overrides import load_yaml, parse_assignments
from xaigan.config.schema import Config, resolve, schema
from xaigan.settings import ConfigError, Option, option

__all__ = [
    "Config",
    "ConfigError",
    "Option",
    "check_name",
    "load_yaml",
    "markdown",
    "option",
    "parse_assignments",
    "resolve",
    "schema",
]
