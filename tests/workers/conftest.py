"""The payment process tests' own named pool, whose connections a test can kill (and no others)."""

from tests.payments.test_process import proc_pool

__all__ = ["proc_pool"]
