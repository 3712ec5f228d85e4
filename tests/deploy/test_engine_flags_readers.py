"""The source readers of scripts/engine_flag_sources.py for engines that cannot be imported here.

trtllm-serve's ``click`` options and its ``--config`` keys (pydantic models) are read with
``ast``; llama-server's options from its ``--help``. They are fed text in the shape those
programs have, and their output is checked by ``check``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from kimi_modes.deploy.flags.accepted import FlagData, check

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "engine_flag_sources.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("engine_flag_sources", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["engine_flag_sources"] = module
    spec.loader.exec_module(module)
    return module


CLICK_SOURCE = """
import click

@click.command("serve")
@click.argument("model", type=str)
@click.option("--host", type=str, default="localhost", help="Hostname.")
@click.option("--backend", type=ChoiceWithAlias(["pytorch", "tensorrt"], {"trt": "tensorrt"}))
@click.option("--log_level", type=click.Choice(["info", "debug"]))
@click.option("--tp_size", "--tensor_parallel_size", type=int, default=1)
@click.option("--trust_remote_code", is_flag=True, default=False)
@click.option("--tool_parser", type=click.Choice(list(PARSERS)), default=None)
@click.option("--enable_chunked_prefill/--disable_chunked_prefill", default=False)
@click.option("--config", "--extra_llm_api_options", "extra_llm_api_options", type=str)
def serve(model, host, backend, log_level, tp_size, trust_remote_code, tool_parser,
          enable_chunked_prefill, extra_llm_api_options):
    pass
"""

LLAMA_HELP = """
----- common params -----

-h,    --help, --usage                  print usage and exit
-t,    --threads N                      number of CPU threads to use during generation
-c,    --ctx-size N                     size of the prompt context (default: 4096)
-ot,   --override-tensor <tensor name pattern>=<buffer type>,...
                                        override tensor buffer type
--cpu-moe, -cmoe                        keep all Mixture of Experts (MoE) weights in the CPU
--jinja                                 use jinja template for chat (default: enabled)
--reasoning-format FORMAT               controls whether thought tags are allowed
-hf,   -hfr, --hf-repo <user>/<model>[:quant]
                                        Hugging Face model repository; quant is optional, see
                                        --hf-repo (default: unused)
-fa,   --flash-attn [on|off|auto]       set Flash Attention use
"""


def as_data(body: dict[str, object], command: str) -> FlagData:
    return FlagData.from_json(
        {"engine": "x", "package": "x", "version": "1", "command": command, **body}
    )


def test_click_options_are_read_with_their_arity_and_static_choices() -> None:
    body = load_script().read_click_command(CLICK_SOURCE, "serve")
    assert body["positionals"] == ["model"]
    flags = body["flags"]
    assert flags["--backend"]["choices"] == ["pytorch", "tensorrt", "trt"]  # alias included
    assert flags["--log_level"]["choices"] == ["debug", "info"]
    assert flags["--config"] == {"value": "required", "aliases": ["--extra_llm_api_options"]}
    assert flags["--tp_size"] == {"value": "required", "aliases": ["--tensor_parallel_size"]}
    assert flags["--trust_remote_code"]["value"] == "none"
    assert "choices" not in flags["--tool_parser"]  # not static: left to the engine
    data = as_data(body, "trtllm-serve serve")
    assert (
        check(
            data, ["m", "--tp_size", "8", "--disable_chunked_prefill", "--tool_parser", "kimi_k2"]
        )
        == []
    )
    assert [p.kind for p in check(data, ["m", "--backend", "trt-llm", "--moe_tp_mode", "1"])] == [
        "bad_choice",
        "unknown",
    ]


def test_llama_server_help_is_read() -> None:
    body = load_script().read_llama_help(LLAMA_HELP)
    flags = body["flags"]
    assert flags["--threads"] == {"value": "required", "aliases": ["-t"]}
    assert flags["--cpu-moe"] == {"value": "none", "aliases": ["-cmoe"]}
    assert flags["--jinja"]["value"] == "none"
    assert flags["--hf-repo"] == {"value": "required", "aliases": ["-hf", "-hfr"]}
    assert flags["--override-tensor"]["value"] == "required"
    assert flags["--flash-attn"]["choices"] == ["auto", "off", "on"]
    data = as_data(body, "llama-server")
    assert check(data, ["-ot", ".ffn_.*_exps.=CPU", "--jinja", "-c", "16384", "-t", "8"]) == []
    assert [
        p.flag for p in check(data, ["--moe-offload", "--tools-file", "t.json", "-fa", "1"])
    ] == [
        "--moe-offload",
        "--tools-file",
        "-fa",
    ]


PYDANTIC_SOURCE = """
class StrictBaseModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

class KvCacheConfig(StrictBaseModel):
    free_gpu_memory_fraction: Optional[float] = Field(default=0.9)
    dtype: str = "auto"
    _private: int = 0

class MoeConfig(StrictBaseModel):
    backend: str = "CUTLASS"

class BaseLlmArgs(StrictBaseModel):
    KIND: ClassVar[str] = "base"
    model: str
    tensor_parallel_size: int = Field(default=1, alias="tp_size")
    kv_cache_config: KvCacheConfig = Field(default_factory=KvCacheConfig)

class TorchLlmArgs(BaseLlmArgs):
    moe_config: Optional["MoeConfig"] = None
    max_seq_len: Optional[int] = Field(default=None,
                                       validation_alias=AliasChoices("max_seq_len", "msl"))
"""


def test_pydantic_models_are_read_with_inherited_and_nested_fields() -> None:
    body = load_script().read_pydantic_models(PYDANTIC_SOURCE, "TorchLlmArgs")
    models = body["models"]
    assert body["root"] == "TorchLlmArgs"
    assert set(models) == {"TorchLlmArgs", "KvCacheConfig", "MoeConfig"}
    root = models["TorchLlmArgs"]
    assert set(root) == {"model", "tensor_parallel_size", "kv_cache_config", "moe_config",
                         "max_seq_len"}  # inherited, no ClassVar
    assert root["tensor_parallel_size"] == {"aliases": ["tp_size"]}
    assert root["max_seq_len"] == {"aliases": ["msl"]}
    assert root["kv_cache_config"] == {"models": ["KvCacheConfig"]}
    assert root["moe_config"] == {"models": ["MoeConfig"]}  # a string annotation too
    assert set(models["KvCacheConfig"]) == {"free_gpu_memory_fraction", "dtype"}


ALIASED_SOURCE = """
class DecodeGraphConfig(StrictBaseModel):
    mode: Literal["decode"] = "decode"
    batch_sizes: Optional[List[int]] = None

class EncodeGraphConfig(StrictBaseModel):
    mode: Literal["encode"] = "encode"
    seq_lens: Optional[List[int]] = None

class MTPConfig(StrictBaseModel):
    decoding_type: Literal["MTP"] = "MTP"
    max_draft_len: int = 1

GraphConfig = DecodeGraphConfig
GraphConfigType: TypeAlias = Annotated[Union[DecodeGraphConfig, EncodeGraphConfig],
                                       Field(discriminator="mode")]
SpeculativeConfig: TypeAlias = Annotated[Union[MTPConfig], Field(discriminator="decoding_type")]

class TorchLlmArgs(StrictBaseModel):
    cuda_graph_config: Optional[GraphConfigType] = Field(default_factory=GraphConfig)
    speculative_config: Optional[SpeculativeConfig] = None
    legacy_graph: Optional[GraphConfig] = None
"""


def test_pydantic_fields_typed_by_module_aliases_name_the_aliased_models() -> None:
    models = load_script().read_pydantic_models(ALIASED_SOURCE, "TorchLlmArgs")["models"]
    root = models["TorchLlmArgs"]
    assert root["cuda_graph_config"] == {"models": ["DecodeGraphConfig", "EncodeGraphConfig"]}
    assert root["speculative_config"] == {"models": ["MTPConfig"]}
    assert root["legacy_graph"] == {"models": ["DecodeGraphConfig"]}
    assert set(models["EncodeGraphConfig"]) == {"mode", "seq_lens"}


REGISTRY_SOURCE = '''
from mmengine import Registry
ToolParserManager = Registry("tool_parser")
LEGACY_NAMES = ("qwen-qwq", "deepseek-r1")
OTHER = ("not-a-parser",)

@ToolParserManager.register_module(["kimi_k2", "kimi-k2"])
class KimiK2ToolParser: ...

@ToolParserManager.register_module(name="default")
class Generic: ...

@OtherManager.register_module("elsewhere")
class NotThisRegistry: ...

class ToolParserFactory:
    parsers: dict[str, type] = {"qwen3": Qwen3, "kimi_k2": KimiK2}
    others = {"nope": 1}

@register_reasoning_parser("kimi_k25", reasoning_at_start=True)
class KimiK25: ...
'''


def test_registry_names_come_from_decorators_the_factory_dict_and_named_tuples() -> None:
    read = load_script().read_registry_names
    assert read(REGISTRY_SOURCE, decorator="ToolParserManager.register_module",
                constants=("LEGACY_NAMES",)) == [
        "deepseek-r1", "default", "kimi-k2", "kimi_k2", "qwen-qwq"]
    assert read(REGISTRY_SOURCE, class_dict=("ToolParserFactory", "parsers")) == [
        "kimi_k2", "qwen3"]
    assert read(REGISTRY_SOURCE, decorator="register_reasoning_parser") == ["kimi_k25"]
    assert read("PARSERS = build()", decorator="register_reasoning_parser") == []


def test_parser_names_in_the_data_become_the_flags_choices() -> None:
    raw = {"engine": "e", "package": "p", "version": "1", "command": "e",
           "flags": {"--tool_parser": {"value": "required"}, "--host": {"value": "required"}},
           "parser_names": {"--tool_parser": {"names": ["kimi_k2"], "source": {}}}}
    data = FlagData.from_json(raw)
    assert data.flags["--tool_parser"].choices == ("kimi_k2",)
    assert [p.kind for p in check(data, ["--tool_parser", "kimi_k3"])] == ["bad_choice"]
    assert check(data, ["--tool_parser", "kimi_k2", "--host", "h"]) == []
