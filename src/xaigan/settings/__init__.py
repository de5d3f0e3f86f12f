"""Declared settings without torch: the option machinery (:mod:`xaigan.settings.options`) and the guidance's
settings (:mod:`xaigan.settings.guidance`), shared by the run configuration and the guidance."""

from xaigan.settings.guidance import (
    MODES,
    NORMALIZE,
    OUTPUTS,
    PRECISIONS,
    PRIOR_MODES,
    SCHEDULES,
    SELECT,
    TARGETS,
    USES,
    GuidanceSettings,
    check_prior,
    config_options,
)
from xaigan.settings.options import RANGES, ConfigError, Option, option, options_of
from xaigan.settings.training import ADAM, COMPILE, LOSSES, SPECTRAL_NORM

__all__ = [
    "ADAM",
    "COMPILE",
    "LOSSES",
    "MODES",
    "NORMALIZE",
    "OUTPUTS",
    "PRECISIONS",
    "PRIOR_MODES",
    "RANGES",
    "SCHEDULES",
    "SELECT",
    "SPECTRAL_NORM",
    "TARGETS",
    "USES",
    "ConfigError",
    "GuidanceSettings",
    "Option",
    "check_prior",
    "config_options",
    "option",
    "options_of",
]
