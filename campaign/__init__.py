"""campaign: publish an organisation's email newsletter.

Render once, fill many; record before you send.
"""

__version__ = "0.1.0"
