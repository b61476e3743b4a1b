import sys

from agents.inspect.serve.server import main

sys.exit(main())
