"""ofakd.cache: the teacher-output cache."""
