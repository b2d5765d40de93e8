"""The OpenAI-compatible HTTP proxy and the API app."""
