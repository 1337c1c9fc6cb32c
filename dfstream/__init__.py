"""The composition root: the ``dfstream`` command and the configuration file that assembles every
section. The only package that knows all the others (stream, pipeline, sinks); nothing imports it."""
