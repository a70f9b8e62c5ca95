"""``python -m sklearn_shapley``: the same as the ``sklearn-shapley`` command."""

import sys

from .cli import main

sys.exit(main())
