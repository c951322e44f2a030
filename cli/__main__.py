"""`python -m closedloop.cli`: the same command as `closedloop`."""

from closedloop.cli.main import main

raise SystemExit(main())
