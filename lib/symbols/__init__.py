"""Symbol builders shared by the architectures (the ResNet-v1 backbone with the original names)."""
