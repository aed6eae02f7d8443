"""`python -m bnexp.bench`: see bnexp/bench/__init__.py."""
import sys

from bnexp.bench import main

sys.exit(main())
