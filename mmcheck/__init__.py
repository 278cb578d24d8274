"""mmcheck: an executable, model-checked specification of x86-64 Linux virtual memory."""

__version__ = "0.1.0"
