"""Streaming backends behind :class:`~actionvos.runtime.backends.base.Backend` (imported lazily by
:func:`~actionvos.runtime.backends.factory.open_backend`)."""
