import sys

from memoire.cli import main

sys.exit(main())
