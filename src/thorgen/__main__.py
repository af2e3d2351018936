import sys

from thorgen.cli import main

sys.exit(main())
