"""Background memory care: tasks that keep each user's memory useful as it grows (decay, …).

Each task walks users in keyset pages (:mod:`memory.care.pages`), handles a page in short transactions that
write only the rows that change, and reports what it changed. Each is idempotent: a second run with nothing
new changes nothing.
"""
