"""The JSON Schema of a pipeline, including the parameters of every installed component, so
editors (yaml-language-server) can complete and check pipeline files."""
from __future__ import annotations

import json
import re
from typing import Any

from kgflow.config.schema import PipelineConfig
from kgflow.registry import Registry

SLOTS = {  # where each kind's component reference sits in the schema
    "dataset": ("properties", "dataset"),
    "builder": ("properties", "graph"),
    "fusion": ("properties", "fusion"),
}


def _component_schema(registry: Registry, kind: str, defs: dict[str, Any]) -> dict[str, Any]:
    options: list[dict[str, Any]] = []
    names: list[str] = []
    for comp in registry.components(kind):
        params = comp.params.model_json_schema(ref_template="#/$defs/{model}")
        prefix = re.sub(r"[^A-Za-z0-9]", "_", f"{kind}_{comp.name}_")
        local = params.pop("$defs", {})
        text = json.dumps(params)
        for def_name, schema in local.items():
            defs[prefix + def_name] = json.loads(json.dumps(schema).replace(
                '"#/$defs/', f'"#/$defs/{prefix}'))
        params = json.loads(text.replace('"#/$defs/', f'"#/$defs/{prefix}'))
        params.pop("title", None)
        all_names = [comp.name, *comp.aliases]
        names += all_names
        options.append({
            "type": "object",
            "description": f"{comp.description} ({comp.package})",
            "properties": {"name": {"enum": all_names}, "params": params},
            "required": ["name"],
            "additionalProperties": False,
        })
    options.append({"type": "string", "enum": names, "description": f"short form: the {kind} name"})
    return {"anyOf": options}


def pipeline_schema(registry: Registry) -> dict[str, Any]:
    schema = PipelineConfig.model_json_schema(ref_template="#/$defs/{model}")
    defs = schema.setdefault("$defs", {})
    for kind, path in SLOTS.items():
        schema[path[0]][path[1]] = _component_schema(registry, kind, defs)
    schema["properties"]["encoders"]["additionalProperties"] = _component_schema(registry, "encoder", defs)
    defs["Objective"]["properties"]["loss"] = _component_schema(registry, "loss", defs)
    defs["EvalConfig"]["properties"]["metrics"]["items"] = {"enum": registry.names("metric")}
    schema["title"] = "kgflow pipeline"
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema
