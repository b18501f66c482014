"""`python -m expyrun` is the same program as `expyrun`."""

from expyrun.cli import main

raise SystemExit(main())
