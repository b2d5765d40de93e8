"""The memory core's REST API: facts, recall, ingest, users, the slot vocabulary, and (admin) keys."""

from memory.routes.facts import create_facts, delete_fact, fact_history, get_fact, list_user_facts, patch_fact
from memory.routes.ingest import ingest
from memory.routes.keys import create_key, list_keys, revoke_key
from memory.routes.recall import recall_facts
from memory.routes.slots import list_slots
from memory.routes.users import forget_user, forget_user_by_query, user_profile

ROUTES = [
    create_facts,
    get_fact,
    patch_fact,
    delete_fact,
    list_user_facts,
    fact_history,
    recall_facts,
    ingest,
    user_profile,
    forget_user,
    forget_user_by_query,
    list_slots,
    create_key,
    list_keys,
    revoke_key,
]

__all__ = ["ROUTES"]
