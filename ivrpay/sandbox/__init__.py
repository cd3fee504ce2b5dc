"""The local gateway: same protocol as GMO-PG, the test cards, fault switches. Another system: it
imports nothing of ivrpay's and shares no state with it."""

from ivrpay.sandbox.server import FAULT_KINDS, Sandbox, run_sandbox, start_sandbox
from ivrpay.sandbox.state import SandboxState

__all__ = ["FAULT_KINDS", "Sandbox", "SandboxState", "run_sandbox", "start_sandbox"]
