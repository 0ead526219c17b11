"""Models as things with an identity: what made an embedding, so that stores can refuse to mix
embeddings of different models (``identity``). The registry of versions, lineage and aliases will
live here too."""
