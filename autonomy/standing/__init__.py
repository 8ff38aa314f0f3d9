"""Standing approvals: bounded, time-boxed pre-approvals people grant, an input of the gate.

``selectors`` holds the per-policy-store-version index the gate reads (no query per
decision), ``services`` grants, revokes and consumes them (the daily bound's one owner),
``receivers`` moves the store version when one is saved or deleted.
"""
