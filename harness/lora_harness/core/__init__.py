"""The checks' framework and primitives every layer may use: errors and exit codes, Check/Measurement/CheckResult, key-set comparison, tensor fingerprints. Imports nothing of the harness."""
