"""iberlite: evaluate compact LLMs on Iberian-language tasks, on the device, with the device cost of every answer."""

__version__ = "0.1.0"
