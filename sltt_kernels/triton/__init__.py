"""The Triton backend: the fused LIF ops as Triton kernels, registered as torch ops.

Imported lazily (on the first call with backend="triton", or when `auto` falls back to it), so
`import sltt_kernels` never needs Triton. On CPU tensors it runs only under TRITON_INTERPRET=1,
which must be set before this module is imported.
"""

from __future__ import annotations

import os


def unavailable_reason():
    """None when the Triton backend can run, else why not."""
    try:
        import triton  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        return f"triton is not installed or failed to import ({e}); pip install triton"
    return None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
