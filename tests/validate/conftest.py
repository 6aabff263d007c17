"""Make the repository root importable for the tests and for the processes they spawn.

Spawned workers inherit ``sys.path`` from the parent, so inserting the root here also lets
``torch.multiprocessing`` children import :mod:`validate`.
"""

import sys
from pathlib import Path

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
