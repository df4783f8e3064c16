"""The viewer's Qt-free core: view state, messages, events, scheduling and the view logic."""
