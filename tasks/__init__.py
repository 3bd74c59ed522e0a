"""Built-in task families of stence-bench (import package ``stence_bench_tasks``).

Each family is a plugin module listed in ``stence_bench.plugin_loader.DEFAULT_PLUGINS``, with a task card
``<family>.md`` beside it: definition, source columns, citation.
"""
