"""Sub-commands of the ``clear`` command line, one module each.

A command module provides ``HELP`` (one line), ``configure(parser)`` (adds its arguments to an
:class:`argparse.ArgumentParser`) and ``run(args) -> int`` (the exit status). Modules must stay light at
import time: import torch, transformers or TRL inside ``run``, so ``clear --help`` and ``clear degrade`` stay fast.
"""
