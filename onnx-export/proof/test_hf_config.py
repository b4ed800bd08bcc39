"""Config reading without torch: `python3 onnx-export/proof/test_hf_config.py` (plain Python, no packages).

The real configs of make_checkpoints.py are accepted with the facts the graphs need; every field the
graph writers do not implement is refused by name. Exit 1 on the first wrong outcome.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from omm_export.families.hf_config import UnsupportedConfig, check_chameleon_config, check_llama_config  # noqa: E402
from make_checkpoints import CHAMELEON_7B, CODELLAMA_7B, LLAMA_32_1B_INSTRUCT  # noqa: E402


def refused(fn, raw, word):
    try:
        fn("config.json", raw)
    except UnsupportedConfig as e:
        assert word in str(e), f"refusal of {word!r} does not name it: {e}"
        return
    raise AssertionError(f"not refused: {word!r}")


def main() -> int:
    f = check_llama_config("config.json", CODELLAMA_7B)
    assert f["rope"] == {"rope_type": "default", "rope_theta": 1e6} and f["head_dim"] == 128 and f["context_cap"] == 16384, f
    f = check_llama_config("config.json", LLAMA_32_1B_INSTRUCT)
    assert f["rope"]["rope_type"] == "llama3" and f["rope"]["factor"] == 32.0 and f["tie_word_embeddings"] and f["head_dim"] == 64, f
    # transformers 5 layout: rope_theta inside rope_parameters
    f = check_llama_config("config.json", dict(CODELLAMA_7B, rope_theta=None, rope_scaling=None,
                                               rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 5e5}))
    assert f["rope"] == {"rope_type": "linear", "factor": 4.0, "rope_theta": 5e5}, f
    f = check_llama_config("config.json", dict(CODELLAMA_7B, rope_scaling={"rope_type": "dynamic", "factor": 2.0,
                                                                           "original_max_position_embeddings": 4096}))
    assert f["context_cap"] == 4096, f   # dynamic NTK: plain RoPE only up to its configured length
    f = check_llama_config("config.json", dict(CODELLAMA_7B, attention_bias=True, mlp_bias=True))
    assert f["attention_bias"] and f["mlp_bias"], f
    for change, word in [({"sliding_window": 4096}, "sliding_window"), ({"hidden_act": "gelu"}, "hidden_act"),
                         ({"pretraining_tp": 2}, "pretraining_tp"), ({"partial_rotary_factor": 0.5}, "partial_rotary_factor"),
                         ({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}, "yarn"),
                         ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "beta_fast": 32}}, "beta_fast"),
                         ({"qk_layernorm": True}, "qk_layernorm"), ({"quantization_config": {"bits": 4}}, "quantization_config"),
                         ({"logit_softcapping": 30.0}, "logit_softcapping"), ({"head_dim": 7}, "head_dim")]:
        refused(check_llama_config, dict(CODELLAMA_7B, **change), word)
    chameleon = dict(CHAMELEON_7B, vocabulary_map={})
    f = check_chameleon_config("config.json", chameleon)
    assert f["rope"]["rope_theta"] == 10000.0, f
    for change, word in [({"swin_norm": True}, "swin_norm"), ({"model_parallel_size": 4}, "model_parallel_size"),
                         ({"vq_config": dict(CHAMELEON_7B["vq_config"], attn_type="linear")}, "attn_type")]:
        refused(check_chameleon_config, dict(chameleon, **change), word)
    print("hf_config: all expectations held")
    return 0


if __name__ == "__main__":
    sys.exit(main())
