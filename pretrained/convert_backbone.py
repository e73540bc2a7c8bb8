"""Entry point kept at the path the original README names.

``python pretrained/convert_backbone.py INPUT OUTPUT`` is the same as
``python -m scripts.convert_backbone INPUT OUTPUT`` (see that module for the options).
"""

import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from scripts.convert_backbone import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
