"""einlass: automated membership management for merchants who sell digital goods."""

__version__ = "0.1.0"
