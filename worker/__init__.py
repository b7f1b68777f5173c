"""constancias: one package per layer — core, intake, storage, report, engine, services,
interfaces — each importing only the layers below it (docs/architecture.md)."""
