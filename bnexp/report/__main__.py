"""`python -m bnexp.report DIR`: see bnexp/report/__init__.py."""
import sys

from bnexp.report import main

sys.exit(main())
