"""The live runtime: sources in, batched models, verdicts out through the Sink protocol. The only
asynchronous part of ``pipeline``."""
