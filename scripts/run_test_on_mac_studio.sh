#!/usr/bin/env bash
# Run the harness's gate suite on a Mac Studio over SSH and bring the reports home.
# Usage: scripts/run_test_on_mac_studio.sh <host> <user> [lora-harness run options...]
# e.g.   scripts/run_test_on_mac_studio.sh studio-1.local ml --model ~/models/Qwen2.5-7B-mlx
set -euo pipefail
if [ $# -lt 2 ]; then
    echo "usage: $0 <host> <user> [lora-harness run options...]" >&2
    exit 2
fi
host=$1 user=$2
shift 2
exec lora-harness remote run --host "$user@$host" -- "$@"
