"""The managed browser: launching, attaching to and watching the Chrome that carries the logged-in feed."""
