"""Vectra: one rugs.fun connection, republished as a documented, sequenced event stream."""

__version__ = "0.1.0"
