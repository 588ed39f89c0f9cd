"""Where data lives: database connections and the single writer, migrations, the blob store."""
