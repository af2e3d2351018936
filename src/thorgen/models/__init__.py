"""Model weights: what is configured, what is installed, and how to get what is missing."""
