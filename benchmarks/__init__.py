"""Load benchmarks of the prediction service, side by side with Cog's server.

Run ``python -m benchmarks --help`` from the repository root. The pieces: ``_receiver``
(the webhook receiver), ``_servers`` (starting the servers under test, memory),
``_scenarios`` (the six scenarios and their sizes), ``_analysis`` (figures from the
arrivals), ``_results`` and ``_plot`` (the report), ``_cli`` (the command).
"""
