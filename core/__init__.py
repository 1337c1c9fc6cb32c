"""What every room of dfstream stands on, below ``stream/``: the error tree, the strict base of every
configuration model, redaction of secrets, and the edge every source and sink is built on
(lifecycle, bounded drop-oldest queue, jittered backoff, rate-limited log, thread hand-off).

Nothing here knows frames, models or sinks; everything above may import it."""
