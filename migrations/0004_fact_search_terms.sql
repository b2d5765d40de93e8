-- Lexical recall: each fact's search terms (English stems), stored and GIN-indexed, so that lexical
-- candidates are found without scoring every row. pg_trgm then scores only those candidates; computing
-- trigram similarity over every fact of a user cost ~30 µs a fact on each recall.
ALTER TABLE memory_facts
    ADD COLUMN search_terms tsvector GENERATED ALWAYS AS (to_tsvector('english', text)) STORED;
CREATE INDEX memory_facts_search_terms ON memory_facts USING gin (search_terms);
DROP INDEX memory_facts_text_trgm;
