"""The `enrich` function: DynamoDB stream records of new opens → mail client, machine/proxy
verdict, geolocation, written once onto the event with the aggregates."""
