"""ofakd.run_folder: the folder lock, the run-folder record."""
