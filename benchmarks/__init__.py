"""ivrpay benchmarks: ``make bench`` (``python -m benchmarks``). They measure and print; they
never pass or fail on a number."""
