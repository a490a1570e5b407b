import sys

from spline_lstm.cli.main import main

sys.exit(main())
