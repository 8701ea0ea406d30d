import sys

from fno.data.cli import main

sys.exit(main())
