"""ofakd.analysis: CKA and the report."""
