"""Test-suite settings shared by every module.

Hypothesis runs derandomized (a fixed example sequence per test) and without an example database, so that a
CI run is reproducible and a failure seen once is seen again. Set ``HYPOTHESIS_PROFILE=explore`` to draw fresh
random examples on every run instead.
"""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
settings.register_profile("explore", database=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
