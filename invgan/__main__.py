"""`python -m invgan`: the command line (an interrupt while it starts up exits quietly too)."""

import sys

if __name__ == "__main__":
    try:
        from invgan.cli import main

        main()
    except KeyboardInterrupt:
        print("invgan: interrupted", file=sys.stderr)
        sys.exit(130)
