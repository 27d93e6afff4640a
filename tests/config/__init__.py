"""ofakd.config: recipes, overrides, validation."""
