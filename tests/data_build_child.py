"""Run ``data build`` in a child process (for the SIGTERM test): ``python data_build_child.py SOURCE OUTDIR BASE_URL``.

The child probes with the fake backbone and judges with the rule judge; the exit status is the CLI's
(143 after a SIGTERM, 0 when complete).
"""

from __future__ import annotations

import sys

from data_fixtures import fake_prober

from clear_plugins.commands.data import run_build
from clear_plugins.data.config import DataBuildConfig, TraceEndpointConfig
from clear_plugins.rewards.judge_rules import RuleJudge


def main(source: str, output: str, base_url: str) -> int:
    """Build with the settings of the resume test."""
    endpoint = TraceEndpointConfig(
        base_url=base_url, model="trace-model", concurrency=2, timeout=1.5, backoff=0.05
    )
    config = DataBuildConfig(sources=(source,), output_dir=output, endpoint=endpoint, progress=False)
    return run_build(config, fake_prober(), RuleJudge())


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
