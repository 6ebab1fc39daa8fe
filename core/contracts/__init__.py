"""The ground floor: the shapes every other layer agrees on (envelope, channels, feed interfaces,
components, history, requests). Nothing here imports anything else of Vectra; import-linter holds it so."""
