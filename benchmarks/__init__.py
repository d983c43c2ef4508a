"""Speed benchmarks against PyTorch and the matmul peak (not shipped in the wheel)."""
