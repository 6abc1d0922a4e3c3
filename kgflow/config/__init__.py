"""Pipeline configuration: safe YAML, inheritance and overrides, the schema, and validation."""
from kgflow.config.schema import SCHEMA_VERSION, ComponentRef, PipelineConfig
from kgflow.config.validate import LoadedPipeline, load_pipeline

__all__ = ["SCHEMA_VERSION", "ComponentRef", "PipelineConfig", "LoadedPipeline", "load_pipeline"]
