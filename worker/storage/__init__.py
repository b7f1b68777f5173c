"""Storage: the models, the one repository with every query, the migrations."""
