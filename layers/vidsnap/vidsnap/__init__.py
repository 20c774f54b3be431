"""vidsnap: self-hosted video frame capture that speaks the OSS/IMM/MPS snapshot languages.

The package is the shared Lambda layer: all real logic lives here, the functions are glue.
Modules are imported lazily by their users so that a cold start pays only for what it uses.
"""

__version__ = "0.1.0"
