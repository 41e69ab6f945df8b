"""``python -m engine.train`` and ``torchrun -m engine.train``: the llm-train command line."""

import sys

from engine.train.cli import main

sys.exit(main())
