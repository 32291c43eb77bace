"""Background consumers that run inside the API process."""
