"""The shipped multi-GPU accelerate configs load with accelerate and name layer classes the model has."""

from __future__ import annotations

from pathlib import Path

import pytest
from accelerate.commands.config.config_args import ClusterConfig
from bagel_helpers import build_tiny_bagel

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "accelerate"


@pytest.mark.parametrize(("name", "kind"), [("fsdp2.yaml", "FSDP"), ("deepspeed_zero3.yaml", "DEEPSPEED")])
def test_accelerate_configs_load(name, kind):
    config = ClusterConfig.from_yaml_file(EXAMPLES / name)
    assert str(config.distributed_type).endswith(kind) and config.num_processes == 8
    assert config.mixed_precision == "bf16"
    if kind == "FSDP":
        model, _ = build_tiny_bagel()
        classes = {type(m).__name__ for m in model.modules()}
        wrapped = config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"].split(",")
        assert set(wrapped) <= classes
    else:
        assert config.deepspeed_config["zero_stage"] == 3
