"""Embedding networks, one module each (``musicnn`` with its network ``musicnn_network`` and checkpoint reader ``tf_bundle``;
its weights are fetched by ``musicdiff.weights.fetch``), ``vggish``, ``clap``), ``base``: the input check they share, and ``registry``:
the names, the log-mel statistics reference and the key of the embedding cache. Networks are imported only when asked for."""
