"""The untrusted side: code that runs inside the sandbox next to the student's submission.

Imports only the standard library, torch, numpy and ``dlgrade.protocol``.
"""
