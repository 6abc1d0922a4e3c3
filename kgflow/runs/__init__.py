"""Running pipelines and the run directories they leave behind."""
