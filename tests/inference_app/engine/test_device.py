"""dtype, quantization and placement for each GPU profile, from device descriptions."""

from __future__ import annotations

import pytest

from inference_app.engine.device import Gpu, Hardware, PlacementError, plan_load

GIB = 2**30
T4 = Gpu("Tesla T4", (7, 5), 15 * GIB)
A100 = Gpu("NVIDIA A100 80GB PCIe", (8, 0), 80 * GIB)
CPU = Hardware()
PHI3_MINI = int(7.6 * GIB)  # 3.8 B parameters in 16 bits
LLAMA_8B = 16 * GIB
LLAMA_70B = 140 * GIB


def test_t4_gets_float16_although_torch_calls_its_emulated_bf16_supported() -> None:
    plan = plan_load(Hardware((T4,)), "none", PHI3_MINI)

    assert (plan.device, plan.dtype, plan.device_map) == ("cuda:0", "float16", None)
    assert plan.warnings == ()


def test_a100_gets_bfloat16() -> None:
    plan = plan_load(Hardware((A100,)), "none", LLAMA_8B)

    assert (plan.device, plan.dtype, plan.quantization) == ("cuda:0", "bfloat16", "none")


def test_cpu_gets_float32_and_refuses_quantization() -> None:
    assert plan_load(CPU, "none", PHI3_MINI).dtype == "float32"
    assert plan_load(CPU).device == "cpu"
    with pytest.raises(PlacementError, match=r"ACA_INFER_QUANTIZATION: 4bit needs a GPU"):
        plan_load(CPU, "4bit", PHI3_MINI)


def test_an_8b_model_on_a_t4_is_flagged_unless_quantized() -> None:
    full = plan_load(Hardware((T4,)), "none", LLAMA_8B)
    assert any("set quantization to 8bit or 4bit" in w for w in full.warnings)

    quantized = plan_load(Hardware((T4,)), "4bit", LLAMA_8B)
    assert quantized.warnings == ()
    assert quantized.dtype == "float16"  # the compute dtype of the 4-bit layers
    assert quantized.device_map == {"": 0}  # bitsandbytes quantizes while placing on the GPU


def test_multi_gpu_keeps_a_model_that_fits_on_one_and_says_why() -> None:
    plan = plan_load(Hardware((A100, A100)), "none", LLAMA_8B)

    assert plan.device_map is None
    assert plan.placement.startswith("on GPU 0 of 2")
    assert "one after another" in plan.placement


def test_multi_gpu_spreads_a_model_too_big_for_one() -> None:
    plan = plan_load(Hardware((A100,) * 4), "none", LLAMA_70B)

    assert plan.device_map == "auto"
    assert plan.device == "cuda:0"
    assert plan.placement.startswith("across all 4 GPUs")
    assert plan.dtype == "bfloat16"


def test_mixed_generations_take_the_dtype_every_gpu_runs_fast() -> None:
    assert plan_load(Hardware((A100, T4)), "none", PHI3_MINI).dtype == "float16"


def test_an_unknown_quantization_names_the_setting_and_the_choices() -> None:
    with pytest.raises(PlacementError, match=r"ACA_INFER_QUANTIZATION: '3bit'.*none, 8bit, 4bit"):
        plan_load(Hardware((T4,)), "3bit", PHI3_MINI)


def test_description_for_the_log() -> None:
    assert Hardware((A100,) * 2).describe() == (
        "2 x NVIDIA A100 80GB PCIe (compute capability 8.0, 80 GiB)"
    )
    assert CPU.describe() == "CPU (no GPU visible)"
