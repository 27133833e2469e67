"""eKuiper starts this file: ``python -u main.py '{"sendTimeout":1000}'`` in the plugin folder."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pyai.plugin.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv))
