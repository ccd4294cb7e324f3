"""``python -m producer.cli``: the ``bulktag`` command."""

import sys

from producer.cli import main

sys.exit(main())
