"""A small Shopify-style shop that rides through a PostgreSQL failover (the README's demo)."""
