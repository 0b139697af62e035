"""The lowest layer: serialization and the other building blocks every layer shares."""
