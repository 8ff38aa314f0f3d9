"""The demo, set apart from the product: demo data (``registry``, ``connectors``, ``drift``,
``workflows``), the demo runs, the demo ERP/CRM/ITSM (``demo.systems``, standard library
only) and the fleet simulator (``fleet``). Nothing outside ``demo`` imports it."""
