"""Package data: the model zoo manifest (``zoo.json``) and label files (``labels/``)."""

import os

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, "zoo.json")
LABELS = os.path.join(HERE, "labels")
