"""The memory core's REST API: facts, recall, ingest and the slot vocabulary."""

from memory.routes.facts import create_facts, fact_history, list_user_facts
from memory.routes.ingest import ingest
from memory.routes.recall import recall_facts
from memory.routes.slots import list_slots

ROUTES = [create_facts, list_user_facts, fact_history, recall_facts, ingest, list_slots]

__all__ = ["ROUTES"]
