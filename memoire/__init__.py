"""Mémoire: a transparent, OpenAI-compatible LLM proxy with long-term memory."""

__version__ = "0.1.0"
