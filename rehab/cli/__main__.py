import sys

from rehab.cli import main

sys.exit(main())
