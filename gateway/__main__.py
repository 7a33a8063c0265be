"""``python -m gateway`` runs the consentgate command line."""

import sys

from gateway.cli import main

sys.exit(main())
