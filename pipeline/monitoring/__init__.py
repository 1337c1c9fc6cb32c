"""Numbers about dfstream itself: typed metric keys, the store, system sampling, alert rules and
reports, behind the seed API's ``PerformanceMonitor``."""
