import sys

from nss.app import main

sys.exit(main())
