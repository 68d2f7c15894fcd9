"""Write the tiny demo model and its LoRA adapter into a share directory.

The logic ships in the package (provision/demo_model.py) so an installed aca-infer can make it
too: `aca-infer local demo-model`. This script is the same thing for a checkout, and the names
that tests and benchmarks import.

Usage: python scripts/make_demo_model.py --share-dir DIR
"""

from __future__ import annotations

import sys

from provision.demo_model import (
    ADAPTER_RELPATH,
    BASE_MODEL_ID,
    BASE_MODEL_RELPATH,
    DemoModel,
    main,
    make_demo_model,
)

__all__ = [
    "ADAPTER_RELPATH",
    "BASE_MODEL_ID",
    "BASE_MODEL_RELPATH",
    "DemoModel",
    "main",
    "make_demo_model",
]

if __name__ == "__main__":
    sys.exit(main())
