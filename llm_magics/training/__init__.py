"""Training: one train function and the runners around it."""
