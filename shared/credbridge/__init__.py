"""credbridge: Docker credential helpers that every container tool can share.

Kept empty on purpose: the thin helper client imports this package on every
call, so nothing here may cost import time.
"""

__version__ = "0.1.0"
