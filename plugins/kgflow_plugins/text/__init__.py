"""Language-model text for encoders and fusions: loading a transformers model (the packaged
MiniLM offline), text templates over item and user fields, pooling, the on-disk embedding cache
(``encoding``), and PEFT adapters and freezing strategies (``adapters``). The ``text`` encoder that
uses them is registered with the other encoders (:mod:`kgflow_plugins.encoders`)."""
