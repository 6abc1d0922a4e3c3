"""Lightning glue: data module, module, negative sampling."""
