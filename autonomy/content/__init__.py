"""Content rules: what agents send, judged inside the gate's decision.

``detectors`` finds things in text (personal data, secrets, terms, recipients), offline;
``rules`` loads the enabled ``ContentRule`` rows per policy-store version and scans an
operation's declared content parameters with them (``scan``); ``results`` checks what a
connector returned against the operation's declared bound, after the fact.
"""
