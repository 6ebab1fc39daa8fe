import sys

from vectra_cli.main import main

sys.exit(main())
