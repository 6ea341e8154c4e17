import sys

from orpo_tui.cli import main

sys.exit(main())
