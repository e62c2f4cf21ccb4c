"""One module per REST resource, each ending with its ``default_handlers`` route table.

Patterns are relative to the API root ``/datalabs/api/``; ``jupyterlab_ext.app`` prefixes them.
"""
