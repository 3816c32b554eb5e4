"""`python -m reducecnn ...` is the `reducecnn` command."""

import sys

from reducecnn.cli import main

sys.exit(main())
