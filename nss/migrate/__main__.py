"""``python -m nss.migrate``: the same as the ``nss-migrate`` command."""

import sys

from nss.migrate.cli import main

sys.exit(main())
