"""``python -m fno_analysis.report <out>/<sweep>``: the same as fno-report."""

import sys

from fno_analysis.report.cli import main

sys.exit(main())
