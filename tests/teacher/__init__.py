"""ofakd.teacher: the teacher source and the teacher's view of a batch."""
