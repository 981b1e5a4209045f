"""The project itself: lint, the layer rules of the import graph, the benchmark tools."""
