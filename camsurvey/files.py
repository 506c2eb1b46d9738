"""Where the project's own files live (torch-free).

The repository's ``data/`` holds the committed weights, annotations and recorded benchmarks;
``book/`` holds the chapters. Every command that writes refuses both (``PROTECTED``).
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "data"
BOOK_DIR = ROOT / "book"
PROTECTED = (DATA_DIR, BOOK_DIR)  # the repository's folders that no command writes into
