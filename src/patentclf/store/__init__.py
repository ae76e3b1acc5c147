"""The service's database: engine and migrations, the feedback store, the predictions log and metrics."""
