"""DynamoDB plumbing shared by every function: attribute codec, batch calls with one retry
policy, update-expression builders, and the event store."""
