"""The old name of :mod:`scripts.convert_backbone`, which converts Swin and ResNet checkpoints:
``python -m scripts.convert_swin_backbone`` runs it unchanged."""

import sys

from scripts.convert_backbone import main

if __name__ == "__main__":
    sys.exit(main())
