import sys

from spline_lstm.cli import main

sys.exit(main())
