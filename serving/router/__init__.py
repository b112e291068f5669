"""The router: picks an arm from an immutable RouteTable and forwards bytes; never parses bodies."""
