"""dlgrade: an autograder for deep-learning homework on sequence models and transformers.

This module stays import-free on purpose: the sandboxed worker imports ``dlgrade.protocol``
and ``dlgrade.worker`` and must not pull in the trusted side.
"""

__version__ = "0.1.0"
