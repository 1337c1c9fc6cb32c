import sys

from dfstream.cli import main

sys.exit(main())
