"""``python -m s2l_scan`` runs the CLI."""

import sys

from s2l_scan.cli import main

sys.exit(main())
