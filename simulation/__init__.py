"""A synthetic after-sales workload for the demo and the benchmarks; no product code imports it."""
