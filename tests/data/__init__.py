"""ofakd.data: sources, transforms, views, the batched path."""
