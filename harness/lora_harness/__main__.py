import sys

from lora_harness.cli import main

sys.exit(main())
