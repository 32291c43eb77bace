"""Built-in templates (package data): one TOML file per locale."""
