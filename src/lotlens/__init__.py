"""lotlens: type and color tags for car dealers' inventory photos.

Importing the package opens no file, socket or model; see `lotlens.vision.Pipeline.load`.
"""

__version__ = "0.1.0"
