"""Benchmarks of dbcli against reference implementations (run the scripts, see bench/README.md)."""
