"""Apply: the executor, the journal and inventory, the live baseline and the secret store."""
