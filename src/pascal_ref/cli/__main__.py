"""``python -m pascal_ref.cli``: the same as ``pascal-ref``."""
import sys

from pascal_ref.cli import main

sys.exit(main())
