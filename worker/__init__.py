"""constancias worker: settings, intake, storage, engine, report and the interfaces (CLI, web)."""
