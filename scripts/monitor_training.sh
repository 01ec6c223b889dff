#!/usr/bin/env bash
# Follow a detached training run's progress, then fetch its adapters.
# Usage: scripts/monitor_training.sh <host> <user> <run-id>
set -euo pipefail
if [ $# -ne 3 ]; then
    echo "usage: $0 <host> <user> <run-id>" >&2
    exit 2
fi
lora-harness remote monitor --host "$2@$1" "$3"
exec lora-harness remote fetch --host "$2@$1" "$3"
