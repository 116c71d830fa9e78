"""The grading harness: a pytest plugin on the trusted side and the proxy hidden tests use."""

from dlgrade.harness import expect
from dlgrade.harness.remote import GradResult, ParamInfo, RemoteObject, Submission

__all__ = ["expect", "GradResult", "ParamInfo", "RemoteObject", "Submission"]
