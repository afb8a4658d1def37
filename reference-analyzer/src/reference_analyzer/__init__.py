"""Reference analysis server: a stand-in for the external analysis server (docs/architecture.md §7).

It exists for development, demos and tests; production points the analyzer-bridge at a
real analysis server. It speaks the same HTTP contract (``contracts.analysis``),
computes real features from the decoded audio, signs its webhooks (Standard Webhooks)
and can be told to misbehave on purpose (see :mod:`reference_analyzer.modes`).
"""

__version__ = "0.1.0"
