"""The REST routes, one ``APIRouter`` per area; ``crossview.serve.app`` includes them in this order.

Each route declares its scope with ``openapi_extra=access(...)`` (``crossview.serve.http``), gets
what it needs from ``crossview.serve.deps``, calls the ``Service`` (or a step of
``crossview.serve.usecases``) and maps the answer to a model of ``crossview.serve.schemas``.
Refusals are raised as ``crossview.serve.errors`` and answered by the app's one error mapping.
"""
