"""Benchmarks of the infrastructure layer against a local AWS endpoint (see bench/README.md)."""
