"""`python -m loadtests SCENARIO ...`: the same as `serving loadtest SCENARIO ...`."""

import argparse
import sys

from serving.commands.loadtest import add_arguments, main

if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        prog="python -m loadtests", description="Run a Locust load test headless."
    )
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
