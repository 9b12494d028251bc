"""Optional integrations, each an app of its own that a project adds when it wants it."""
