"""The Ray engine: the same config on a Ray cluster (``runtime: {engine: ray}``).

    driver (dfstream run / dfstream ray apply / status / down)
      ├─ dfstream.controller (detached, on the head)  which node runs which stream; heartbeats;
      │     │                                          the autoscaler told of every stream
      │     └─ dfstream.node.<node id>.<n> (one per node that takes streams)
      │           the local Runtime for that node's streams: faces and detectors batched across
      │           them in-process, one MQTT client, JSON lines, the store
      ├─ dfstream.numbers (detached)     the streams' sequence numbers, kept across moves
      ├─ dfstream.metrics (detached)     every node runtime's and pool replica's numbers, one /metrics
      └─ Serve app dfstream-detector-<name> / dfstream-voice-<name>   only for the models named in
            runtime.deployments: a shared pool (a GPU pool, say), @serve.batch across every node

Modules: ``placement`` (the arithmetic of where streams go), ``controller``, ``nodes`` (the node
runtime), ``serving`` (the shared pools, and what a node runtime submits to them), ``numbers``,
``metrics``, ``engine`` (deploy, apply, watch, remove).
"""
