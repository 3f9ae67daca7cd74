"""The instructor sources, solutions included: read as text, never imported, never handed out."""
