"""Sample workloads that ship with zdt for its tests, demo and benchmarks."""
