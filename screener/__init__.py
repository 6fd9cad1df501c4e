"""Screener: a telemarketer-screening IVR for Asterisk."""

__version__ = "0.1.0"
