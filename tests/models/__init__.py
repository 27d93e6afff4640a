"""ofakd.models: creation, checkpoints, stage maps, any nn.Module, the Hugging Face Hub."""
