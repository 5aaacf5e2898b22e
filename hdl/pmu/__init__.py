"""Pattern memory unit (ARCHITECTURE.md section 4)."""
