"""LoCoMo retrieval benchmark: import the observations through ``POST /v1/facts``, ask every question through
``POST /v1/recall``, and score recall@k of the gold evidence turns (Maharana et al., ACL 2024, Table 3).

The dataset (CC BY-NC 4.0) is read at run time from the shared datasets folder, never copied into the repo;
the results name questions by conversation and index only.
"""
