"""The models the benchmarks serve: ``project.py`` for this project's server,
``cog_predict.py`` (copied as ``predict.py`` into a temporary directory) for Cog's."""
