"""Sub-commands of the ``clear-plugins`` command line, one module each.

A command module provides ``HELP`` (one line), ``configure(parser)`` (adds its arguments to an
:class:`argparse.ArgumentParser`) and ``run(args) -> int`` (the exit status). Modules must stay light at
import time: import torch, transformers or TRL inside ``run``, so ``clear-plugins --help`` and ``clear-plugins degrade`` stay fast.
"""
