"""The Ray engine: the same config on a Ray cluster (``runtime: {engine: ray}``).

    driver (dfstream run / dfstream ray apply)
      ├─ Serve app dfstream-faces        FaceFinder replicas, @serve.batch across every stream
      ├─ Serve app dfstream-detector-<name>   Scorer replicas, one app per detector
      ├─ dfstream.numbers (detached)     the streams' sequence numbers, kept across restarts
      ├─ dfstream.metrics (detached)     every actor's and replica's numbers, one /metrics
      └─ dfstream.stream.<id> (detached, one per stream, restarted by Ray)
            the local Runtime for that one stream, with Serve handles as its backends and
            its own sinks (MQTT client, JSON lines, store)

Modules: ``serving`` (the deployments, and the remote backends a stream actor submits to),
``numbers``, ``streams`` (the stream actor), ``metrics``, ``engine`` (deploy, apply, watch, remove).
"""
