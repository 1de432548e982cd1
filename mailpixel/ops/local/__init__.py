"""The local stack: DynamoDB Local, tables made from `serverless.yml`, both apps on one port,
and a stream poller standing in for Lambda's event source mapping."""
