"""One router per resource; `lotlens.api.app` includes them all."""
