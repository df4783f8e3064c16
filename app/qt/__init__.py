"""The viewer's Qt side: windows, widgets, the engine worker thread, the collector, the theme."""
