-- An approximate path for users with very many facts: HNSW over the default local model's vectors.
-- The column has no fixed dimension (models differ), so the index is on a cast, and partial on the model:
-- rows of other models are never cast. Recall uses it only for users above memory.hnsw_threshold facts; for
-- the rest, the exact per-user sort is faster and loses nothing. Another model needs its own index like it.
CREATE INDEX memory_facts_minilm_hnsw ON memory_facts
    USING hnsw ((embedding::vector(384)) vector_cosine_ops)
    WHERE embedding_model = 'all-MiniLM-L6-v2' AND status IN ('active', 'superseded');
