"""Background memory care: tasks that keep each user's memory useful as it grows (decay, …).

Each task walks users in keyset pages (:mod:`memory.care.pages`), handles a page in one short transaction,
skips rows another transaction holds (``SKIP LOCKED``: they are handled next run), and reports what it
changed. Each is idempotent: a second run with nothing new changes nothing.
"""
