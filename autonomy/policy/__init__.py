"""Policy-as-code: Cedar policies over the agent and connector registry.

``schema`` generates the Cedar schema from the registry, ``engine`` compiles and evaluates
enabled policies (sliced per request, cached per store version), ``services`` saves them.
"""
