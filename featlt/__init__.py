"""featlt: evaluate frozen pretrained image backbones and cheap heads on long-tailed data."""

__version__ = "0.1.0"
