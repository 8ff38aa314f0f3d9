"""Demo ERP, CRM and ITSM systems for Autonomy OS: small, real HTTP services described by
OpenAPI documents, so ``make run``'s demo agents do real calls end to end.

Standard library only (no Django): ``python -m demo.systems --port 8100``.
"""
