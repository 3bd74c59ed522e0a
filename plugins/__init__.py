"""Built-in plugins of stence-bench (import package ``stence_bench_plugins``).

Each sub-package is a plugin module listed in ``stence_bench.plugin_loader.DEFAULT_PLUGINS`` and registers
through the same hooks a third-party package uses. Registration modules only build specs; model code lives in
sibling modules named by the specs' ``factory`` strings and is imported on first use.
"""
