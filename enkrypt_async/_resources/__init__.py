"""The proxy's resources, one module each.

Each module holds a resource class with ``create()``, its `Stream` subclass and the
accumulator behind that stream's ``collect()``.

Each imports the pipeline (`_base_client`) and the shared `Stream`; none imports
another resource or the client that carries it.
"""
