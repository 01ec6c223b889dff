#!/usr/bin/env bash
# Start a LoRA training run on a Mac Studio, detached (survives this terminal closing).
# Usage: scripts/train_on_mac_studio.sh <host> <user> [lora-harness train options...]
# Prints the run id; follow it with scripts/monitor_training.sh <host> <user> <run-id>.
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 <host> <user> [lora-harness train options...]" >&2
    exit 2
fi
host=$1 user=$2
shift 2
exec lora-harness remote train --host "$user@$host" -- "$@"
