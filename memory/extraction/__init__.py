"""Fact extraction: an LLM reads an exchange and the user's known facts, and answers with atomic facts."""
