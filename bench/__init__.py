"""Benchmarks and the soak: every figure side by side with a baseline measured in the same run."""
