"""rtms-fast: a high-throughput ingest engine for Zoom Realtime Media Streams (RTMS)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
