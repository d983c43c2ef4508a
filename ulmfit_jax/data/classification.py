"""Moved to `ulmfit_jax.core.data.classification` (the ELMo sentence program uses it too).

This name stays importable for existing code, and is the very same module object, so that
patching an attribute through either name (as tests do) patches both.
"""

import sys

from ulmfit_jax.core.data import classification as _classification

sys.modules[__name__] = _classification
